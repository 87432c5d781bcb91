"""Claims: exclusive ownership of a named resource, with lease expiry.

``try_claim(claim_id, worker_id) -> Claim | None`` lets exactly one worker win
any race, in one atomic statement per store:

* SQL: ``INSERT ... ON CONFLICT (claim_id) DO UPDATE ... WHERE status = 'available'
  OR lease_expires_at < now RETURNING`` (an ``UPDATE ... WHERE status='available'
  ... RETURNING`` that also creates the row on first use), on SQLite >= 3.35 and
  PostgreSQL;
* Redis: ``SET key worker NX PX lease``.

A claim taken with a lease becomes available again when the lease runs out, so
a crashed claimant cannot hold a resource forever. ``release`` only works for
the worker that holds the claim.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    create_engine,
    delete,
    func,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from xcomsim.backend.errors import ExclusiveXComError, XComValueError

Clock = Callable[[], float]

metadata = MetaData()
claim_table = Table(
    "xcomsim_claim",
    metadata,
    Column("claim_id", String(250), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("claimed_by", String(250)),
    Column("claimed_at", DateTime(timezone=True)),
    Column("lease_expires_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Claim:
    claim_id: str
    worker_id: str
    claimed_at: float
    lease_expires_at: float | None


class ClaimStore(Protocol):
    def try_claim(self, claim_id: str, worker_id: str, lease_seconds: float | None = None) -> Claim | None: ...

    def release(self, claim_id: str, worker_id: str) -> bool: ...

    def holder(self, claim_id: str) -> str | None: ...


MAX_LEASE_SECONDS = 366 * 24 * 3600


def check_lease(lease_seconds: object) -> float | None:
    """None (no expiry) or a finite number of seconds in (0, one year]; anything else names the problem.

    A lease of 0 or less would be over as it starts (two winners); NaN, inf and
    1e20 cannot become a timestamp or a Redis expiry.
    """
    if lease_seconds is None:
        return None
    if isinstance(lease_seconds, bool) or not isinstance(lease_seconds, (int, float)):
        raise XComValueError(f"lease_seconds must be a number of seconds or None, got {lease_seconds!r}")
    if not math.isfinite(lease_seconds) or not 0 < lease_seconds <= MAX_LEASE_SECONDS:
        raise XComValueError(
            f"lease_seconds={lease_seconds!r}: a lease must be more than 0 and at most {MAX_LEASE_SECONDS} "
            "seconds (one year), or None for a claim that never expires"
        )
    return float(lease_seconds)


def _check_ids(claim_id: str, worker_id: str) -> None:
    for name, value in (("claim_id", claim_id), ("worker_id", worker_id)):
        if not isinstance(value, str) or not value or len(value) > 250:
            raise ExclusiveXComError(f"{name} must be a 1-250 char string, got {value!r}")


def _as_datetime(seconds: float | None) -> Any:
    from datetime import datetime, timezone

    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def _as_seconds(value: Any) -> float | None:
    from datetime import timezone

    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


class SqlClaimStore:
    """Claims in a SQLAlchemy Core table; give it an engine or a URL (its own DB, or Airflow's).

    Every lease is judged by one clock: the database's own (``now()`` on
    PostgreSQL, SQLite's ``'now'``), read inside the claiming statement itself,
    so a claimant whose clock is minutes off neither writes a lease the others
    see as expired nor steals one. ``clock`` stands in for the database's clock
    (a test's ``ManualClock``): it is still one clock for every claimant.
    """

    def __init__(self, engine: Engine | str, clock: Clock | None = None, create_table: bool = True):
        # pre_ping: a pooled connection the server dropped (a restart, pg_terminate_backend, an idle
        # timeout) is replaced on checkout instead of failing the claim, as Airflow's own engine does
        self.engine = create_engine(engine, pool_pre_ping=True) if isinstance(engine, str) else engine
        self.clock = clock
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise ExclusiveXComError(
                f"SqlClaimStore supports SQLite and PostgreSQL (atomic upsert with RETURNING), not {self.engine.dialect.name}"
            )
        if create_table:
            metadata.create_all(self.engine, tables=[claim_table])
        self._claims = {leased: self._claim_statement(leased) for leased in (False, True)}

    def _insert(self) -> Any:
        return (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert(claim_table)

    def _now(self) -> Any:
        """"Now" in SQL: the bound stand-in clock, or the database's own."""
        t = claim_table.c
        if self.clock is not None:
            return bindparam("now", type_=t.claimed_at.type)
        if self.engine.dialect.name == "postgresql":
            return func.now()
        return func.strftime("%Y-%m-%d %H:%M:%f", "now")

    def _plus_lease(self) -> Any:
        """The lease's expiry in SQL: ``now`` plus the bound ``lease`` seconds, on the same clock."""
        t = claim_table.c
        if self.clock is not None:
            return bindparam("expires", type_=t.lease_expires_at.type)
        lease = bindparam("lease", type_=Float())
        if self.engine.dialect.name == "postgresql":
            return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease)
        return func.strftime("%Y-%m-%d %H:%M:%f", "now", literal("+") + cast(lease, String) + literal(" seconds"))

    def _claim_statement(self, leased: bool) -> Any:
        """The one claiming upsert (per leased or not), built once: building it is three quarters of a claim's
        cost (about 270 us of 360 on in-memory SQLite); each claim only binds its values."""
        t = claim_table.c
        insert = self._insert()
        now = self._now()
        insert = insert.values(claim_id=bindparam("claim_id", type_=t.claim_id.type), status="claimed",
                               claimed_by=bindparam("worker_id", type_=t.claimed_by.type), claimed_at=now,
                               lease_expires_at=self._plus_lease() if leased else null())  # fmt: skip
        taken = ("status", "claimed_by", "claimed_at", "lease_expires_at")
        return insert.on_conflict_do_update(
            index_elements=[t.claim_id],
            set_={name: insert.excluded[name] for name in taken},
            where=(t.status == "available") | self._expired(t.lease_expires_at, self._now()),
        ).returning(t.claim_id, t.claimed_by, t.claimed_at, t.lease_expires_at)

    def try_claim(self, claim_id: str, worker_id: str, lease_seconds: float | None = None) -> Claim | None:
        _check_ids(claim_id, worker_id)
        lease_seconds = self._lease(lease_seconds)
        values: dict[str, Any] = {"claim_id": claim_id, "worker_id": worker_id}
        if self.clock is not None:
            now = self.clock()
            values["now"] = _as_datetime(now)
            values["expires"] = _as_datetime(None if lease_seconds is None else now + lease_seconds)
        else:
            values["lease"] = lease_seconds
        with self.engine.begin() as conn:
            row = conn.execute(self._claims[lease_seconds is not None], values).first()
        if row is None:
            return None
        return Claim(row.claim_id, row.claimed_by, _as_seconds(row.claimed_at) or 0.0, _as_seconds(row.lease_expires_at))

    def _lease(self, lease_seconds: object) -> float | None:
        return check_lease(lease_seconds)

    @staticmethod
    def _expired(expires_at: Any, now: Any) -> Any:
        """The one definition of expiry: a lease is over from its expiry instant on (``holder`` agrees)."""
        return expires_at <= now

    def release(self, claim_id: str, worker_id: str) -> bool:
        t = claim_table.c
        statement = (
            update(claim_table)
            .where(t.claim_id == claim_id, t.claimed_by == worker_id, t.status == "claimed")
            .values(status="available", claimed_by=None, claimed_at=None, lease_expires_at=None)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def holder(self, claim_id: str) -> str | None:
        t = claim_table.c
        live = (t.lease_expires_at.is_(None)) | ~self._expired(t.lease_expires_at, self._now())
        query = select(t.claimed_by).where(t.claim_id == claim_id, t.status == "claimed", live)
        values = {} if self.clock is None else {"now": _as_datetime(self.clock())}
        with self.engine.connect() as conn:
            row = conn.execute(query, values).first()
        return None if row is None else row.claimed_by

    def clear(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(claim_table))


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisClaimStore:
    """Claims as Redis keys: ``SET NX PX`` takes one, a Lua compare-and-delete releases it.

    Lease expiry is Redis's own key expiry (server time), so ``clock`` only stamps ``claimed_at``.
    """

    def __init__(self, client: Any, prefix: str = "xcomsim:claim:", clock: Clock = time.time):
        self.client = client
        self.prefix = prefix
        self.clock = clock

    def try_claim(self, claim_id: str, worker_id: str, lease_seconds: float | None = None) -> Claim | None:
        _check_ids(claim_id, worker_id)
        lease_seconds = check_lease(lease_seconds)
        px = None if lease_seconds is None else max(1, math.ceil(lease_seconds * 1000))
        if not self.client.set(self.prefix + claim_id, worker_id, nx=True, px=px):
            return None
        now = self.clock()
        return Claim(claim_id, worker_id, now, None if lease_seconds is None else now + lease_seconds)

    def release(self, claim_id: str, worker_id: str) -> bool:
        return bool(self.client.eval(_RELEASE, 1, self.prefix + claim_id, worker_id))

    def holder(self, claim_id: str) -> str | None:
        value = self.client.get(self.prefix + claim_id)
        return None if value is None else value.decode()

    @classmethod
    def from_connection(cls, conn_id: str = "redis_default", **kwargs: Any) -> RedisClaimStore:
        from xcomsim.backend.stores import _make_redis_client

        return cls(_make_redis_client(conn_id), **kwargs)


def open_claim_store(clock: Clock | None = None) -> ClaimStore:
    """The claim store ``[xcomsim] claims_store`` names (``sql``, the default, or ``redis``).

    Leases are judged by the store's own clock (the database's, or Redis's key
    expiry); ``clock`` stands in for the database's clock in a test.
    ``sql`` uses ``[xcomsim] claims_sql_conn`` (a SQLAlchemy URL), or, when that is
    empty, the process's Airflow metadata engine (in the harness: the test's DB; a
    real worker has none and must set the URL). ``redis`` uses the connection
    ``[xcomsim] claims_redis_conn_id`` (default ``redis_default``).
    """
    from xcomsim.compat.names import conf

    kind = conf.get("xcomsim", "claims_store", fallback="sql").strip().lower()
    if kind == "redis":
        conn_id = conf.get("xcomsim", "claims_redis_conn_id", fallback="redis_default")
        return RedisClaimStore.from_connection(conn_id, clock=clock or time.time)
    if kind != "sql":
        raise ExclusiveXComError(f"[xcomsim] claims_store={kind!r}; use 'sql' or 'redis'")
    url = conf.get("xcomsim", "claims_sql_conn", fallback="").strip()
    if url:
        return SqlClaimStore(url, clock=clock)
    from airflow import settings

    if settings.engine is None:
        raise ExclusiveXComError(
            "no claim store: set [xcomsim] claims_sql_conn to a SQLAlchemy URL the workers can reach "
            "(or claims_store = redis)"
        )
    return SqlClaimStore(settings.engine, clock=clock)
