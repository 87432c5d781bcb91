"""The reference backend as it was before its tries were fenced by try number, one mutant per hole.

Time and tries as a deployment has them (several hosts whose clocks disagree,
uploads slower than leases, a zombie try running beside its retry, a run
deleted and triggered again) broke what one process on one clock never showed.
Each mutant restores one old behaviour; ``FENCING`` maps it to the guarantee
that must catch it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from xcomsim.backend.claims import SqlClaimStore
from xcomsim.backend.errors import XComStoreError
from xcomsim.backend.guard import TAKE, Guard, Holder
from xcomsim.backend.xcom import ExclusiveXCom

WALL_CLOCK_LEASE = 300.0  # the old [xcomsim] guard_lease_seconds default


def _lease() -> float:
    from airflow.sdk.configuration import conf

    return float(conf.get("xcomsim", "guard_lease_seconds", fallback=str(WALL_CLOCK_LEASE)))


class WallClockGuard(Guard):
    """The guard as it was: stamped with the pusher's wall clock, taken over once older than the lease.

    A try judged an earlier try's guard without a row by ``time.time()`` minus the
    ``created_at`` the earlier try wrote with its own clock; the pusher's own lease
    was counted from after its upload, and nothing was checked after the row.
    """

    lease_seconds: float | None = None  # None: [xcomsim] guard_lease_seconds (default 300)
    take_over = True

    def acquire(self, holder: Holder, *, digest: str, stored: Any, obj: str | None, replaces: bool,
                row_exists: Callable[[], bool]) -> tuple[str, dict[str, Any] | None]:  # fmt: skip
        lease = _lease() if self.lease_seconds is None else self.lease_seconds
        run = f"{holder.run}#{holder.clear}" if holder.run else ""
        body = json.dumps({**self.coordinate, "try_number": holder.try_number, "ti_id": holder.ti_id, "run": run,
                           "created_at": time.time()}).encode()  # fmt: skip
        self.lease = lease
        if self.store.create(self.name, body):
            self._held = True
            return TAKE, None
        existing = self.store.read(self.name)
        if existing is None and self.store.create(self.name, body):
            self._held = True
            return TAKE, None
        if existing is not None and self.take_over:
            earlier = json.loads(existing[0])
            same = (earlier.get("ti_id", ""), earlier.get("try_number", 0)) == (holder.ti_id, holder.try_number)
            other_run = bool(run and earlier.get("run") and earlier["run"] != run)
            aged = time.time() - float(earlier.get("created_at", 0)) >= lease
            may = not same and ((replaces and earlier.get("try_number", 0) < holder.try_number)
                                or ((other_run or aged) and not row_exists()))  # fmt: skip
            if may and self.store.swap(self.name, existing[1], body):
                self._previous, self._held = existing, True
                return TAKE, None
        self._refuse("push-once keeps the first value", hint=not replaces)

    def fence(self) -> None:
        """The old lease check: counted from after the upload (``uploaded``), on the pusher's monotonic clock."""
        took = time.monotonic() - getattr(self, "uploaded", time.monotonic())
        if self.lease > 0 and took >= self.lease:
            raise XComStoreError(f"push of XCom {self.coordinate['key']!r} took {took:.0f}s, longer than the lease")

    def still_mine(self) -> dict[str, Any] | None:
        return None  # nothing was checked after the row

    def forget(self, holder: Holder) -> None:
        self.store.delete(self.name)

    def release(self) -> None:
        if not self._held:
            return
        if self._previous is None:
            self.store.delete(self.name)
        else:
            self.store.put(self.name, self._previous[0])
        self._held = False


class WallClockGuardXCom(ExclusiveXCom):
    """Push-once fenced by wall clocks, as it was (see ``WallClockGuard``), with one object name for all tries.

    An upload slower than the lease is stored instead of undone; the slow earlier
    try's row replaces its retry's committed value; a try on a host whose clock is
    10 minutes behind is taken over at once; and with ``retry_replaces`` a try in
    flight and its retry write the same object, so the final row can name bytes
    that are gone.
    """

    @classmethod
    def _guard_type(cls, *args: Any) -> Guard:
        return WallClockGuard(*args)

    @classmethod
    def _object_attempt(cls, holder: Holder) -> int | None:
        return None

    @classmethod
    def _write(cls, *args: Any, **kwargs: Any) -> Any:
        stored, push, built = super()._write(*args, **kwargs)
        push.guard.uploaded = time.monotonic()  # the lease was counted from here: after the upload
        return stored, push, built


class WorkerClockClaimStore(SqlClaimStore):
    """SQL claims judged by the claimant's own clock: ``now`` and the lease's expiry were bound from ``time.time()``.

    A worker 10 minutes slow writes leases others see as expired; a worker 10
    minutes fast steals a fresh 5-minute lease: two holders of one claim.
    """

    def __init__(self, engine: Any, clock: Any = None, create_table: bool = True):
        super().__init__(engine, clock=clock or time.time, create_table=create_table)


def worker_clock_claim_store(clock: Any = None) -> WorkerClockClaimStore:
    from xcomsim.backend.claims import open_claim_store

    reference = open_claim_store()
    return WorkerClockClaimStore(reference.engine, create_table=False)


class WorkerClockClaimsXCom(ExclusiveXCom):
    """The reference backend with ``WorkerClockClaimStore`` as its claim store."""

    xcomsim_contract = {**ExclusiveXCom.xcomsim_contract,
                        "claim_store": "xcomsim.mutants.fencing:worker_clock_claim_store"}  # fmt: skip


class StrictAcrossTriesGuard(Guard):
    """The retry rule as it was: once a value is stored, no later try may push the key (without retry_replaces)."""

    def _decide(self, earlier: dict[str, Any], me: Holder, digest: str, replaces: bool,
                row_exists: Callable[[], bool]) -> str:  # fmt: skip
        if int(earlier.get("try_number", 0)) < me.try_number and not replaces and row_exists():
            self._refuse("push-once keeps the first value", hint=True)
        return super()._decide(earlier, me, digest, replaces, row_exists)


class StrictAcrossTriesXCom(ExclusiveXCom):
    """Push-once held across tries: a try killed after its push committed leaves a value no retry may replace.

    On a Celery deployment a task killed right after its push never succeeds
    again: every retry gets ``XComOverwriteError`` and the DAG run fails, even
    when the retry would push the very same value.
    """

    @classmethod
    def _guard_type(cls, *args: Any) -> Guard:
        return StrictAcrossTriesGuard(*args)


def _sweep_without_recheck(store: Any, engine: Any, dry_run: bool, grace_seconds: float | None) -> Any:
    """The sweep as it was: every name under the prefix, guards' run verdicts never re-checked, plain deletes."""
    from sqlalchemy import create_engine

    from xcomsim.backend.config import load
    from xcomsim.backend.gc import SweepReport, _live_runs, referenced_names
    from xcomsim.backend.stores import open_store

    store = open_store(store) if isinstance(store, str) else store
    engine = create_engine(engine) if isinstance(engine, str) else engine
    grace = load().gc_grace_seconds if grace_seconds is None else grace_seconds
    values = {o.name: o for o in store.listing("values/")}
    guards = {}
    for name in store.names("guards/"):
        found = store.read(name)
        try:
            guards[name] = json.loads(found[0]) if found else {}
        except ValueError:
            guards[name] = {}
    referenced = referenced_names(engine, store)
    report = SweepReport(str(store.location), dry_run, referenced=len(referenced & set(values)))
    now = time.time()
    for name in sorted(set(values) - referenced):
        modified = values[name].modified
        (report.orphan_values if modified is not None and now - modified >= grace else report.young).append(name)
    runs = _live_runs(engine)
    report.stale_guards = sorted(n for n, g in guards.items() if (g.get("dag_id"), g.get("run_id")) not in runs)
    if not dry_run:
        fresh = referenced_names(engine, store)
        kept = [n for n in report.orphan_values if n in fresh or store.version(n) != values[n].version]
        report.orphan_values = [n for n in report.orphan_values if n not in kept]
        for name in report.orphan_values + report.stale_guards:
            store.delete(name)
    return report


class UncheckedSweepXCom(ExclusiveXCom):
    """``xcomsim gc`` judged guards once and deleted any name under its prefix.

    A run deleted and triggered again under the same ``run_id`` while gc runs
    loses its fresh guard (the "run no longer exists" verdict is not re-checked
    before the delete), so the same try can push its key twice; and a
    ``README.txt`` or ``ledger.csv`` under the prefix is deleted as an orphan.
    """

    @classmethod
    def sweep(cls, store: Any, engine: Any, *, dry_run: bool = True, grace_seconds: float | None = None) -> Any:
        return _sweep_without_recheck(store, engine, dry_run, grace_seconds)


FENCING: dict[str, str] = {
    "xcomsim.mutants.fencing.WallClockGuardXCom": "fenced-tries",
    "xcomsim.mutants.fencing.WorkerClockClaimsXCom": "exactly-one-claim-winner",
    "xcomsim.mutants.fencing.UncheckedSweepXCom": "gc-safe-with-inflight-pushes",
    "xcomsim.mutants.fencing.StrictAcrossTriesXCom": "retry-can-push",
}


