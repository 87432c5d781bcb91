"""Broken claim stores, written the way a user would write them (plain SQLAlchemy / redis-py)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update

from xcomsim.backend.claims import Claim, SqlClaimStore, claim_table


class CheckThenActClaimStore(SqlClaimStore):
    """Reads whether the claim is free, then claims it in a second transaction.

    Between the SELECT and the UPDATE another worker can claim the same row, and
    the UPDATE does not re-check the status: two winners.
    """

    def try_claim(self, claim_id: str, worker_id: str, lease_seconds: float | None = None) -> Claim | None:
        t = claim_table.c
        with self.engine.connect() as conn:
            row = conn.execute(select(t.status).where(t.claim_id == claim_id)).first()
        if row is not None and row.status == "claimed":
            return None
        with self.engine.begin() as conn:
            if row is None:  # an unconditional upsert: whoever writes last "wins" too
                conn.execute(self._insert().values(claim_id=claim_id, status="claimed", claimed_by=worker_id)
                             .on_conflict_do_update(index_elements=[t.claim_id],
                                                    set_={"status": "claimed", "claimed_by": worker_id}))  # fmt: skip
            else:
                conn.execute(update(claim_table).where(t.claim_id == claim_id).values(
                    status="claimed", claimed_by=worker_id))  # fmt: skip
        return Claim(claim_id, worker_id, (self.clock or time.time)(), None)


class NoLeaseClaimStore(SqlClaimStore):
    """Ignores the lease: a crashed claimant holds its claim forever."""

    def try_claim(self, claim_id: str, worker_id: str, lease_seconds: float | None = None) -> Claim | None:
        return super().try_claim(claim_id, worker_id, lease_seconds=None)


class RedisGetThenSetClaimStore:
    """GET the key; if empty, SET it. Two workers can both see it empty."""

    def __init__(self, client: Any, prefix: str = "mutant:claim:", clock: Any = time.time):
        self.client, self.prefix, self.clock = client, prefix, clock

    def try_claim(self, claim_id: str, worker_id: str, lease_seconds: float | None = None) -> Claim | None:
        if self.client.get(self.prefix + claim_id) is not None:
            return None
        self.client.set(self.prefix + claim_id, worker_id)
        return Claim(claim_id, worker_id, self.clock(), None)

    def release(self, claim_id: str, worker_id: str) -> bool:
        return bool(self.client.delete(self.prefix + claim_id))

    def holder(self, claim_id: str) -> str | None:
        value = self.client.get(self.prefix + claim_id)
        return None if value is None else value.decode()


# Zero-argument factories, as a backend's ``xcomsim_contract['claim_store']`` names them.
def _metadata_engine() -> Any:
    """The database the reference's claim store uses: ``[xcomsim] claims_sql_conn`` where set (a real worker
    has no metadata engine of its own), else the process's Airflow engine (the harness's test DB)."""
    from airflow import settings
    from airflow.sdk.configuration import conf

    url = conf.get("xcomsim", "claims_sql_conn", fallback="").strip()
    return url or settings.engine


def check_then_act_store() -> CheckThenActClaimStore:
    return CheckThenActClaimStore(_metadata_engine())


def no_lease_store() -> NoLeaseClaimStore:
    return NoLeaseClaimStore(_metadata_engine())


def redis_get_then_set_store() -> RedisGetThenSetClaimStore:
    from xcomsim.backend.stores import _make_redis_client

    return RedisGetThenSetClaimStore(_make_redis_client("redis_default"))
