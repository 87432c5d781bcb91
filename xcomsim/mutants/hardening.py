"""The reference backend as it was before each hole was closed, one mutant per hole.

Each subclass of ``ExclusiveXCom`` (or of one of its parts) restores exactly one
old behaviour. ``HARDENING`` maps each to the guarantee that must catch it; the
tests in ``tests/test_backend_attacks.py`` run every attack on the mutant (which
must lose) and on ``ExclusiveXCom`` (which must not).
"""

from __future__ import annotations

from typing import Any

from xcomsim.backend import codec
from xcomsim.backend.claims import SqlClaimStore
from xcomsim.backend.stores import open_store
from xcomsim.backend.guard import Guard
from xcomsim.mutants.fencing import WallClockGuard
from xcomsim.backend.xcom import ExclusiveXCom


class ForeignReferencePurgeXCom(ExclusiveXCom):
    """Purge deletes, and a pull reads, whatever object a row's reference names.

    A row written by other code (a raw ``SetXCom``, Airflow's REST API) with a
    crafted reference makes the next retry delete another XCom's object, and a
    pull of that row read it.
    """

    @classmethod
    def delete(cls, key: str, task_id: str, dag_id: str, run_id: str, map_index: int | None = None) -> None:
        from airflow.sdk.bases.xcom import BaseXCom

        if not ExclusiveXCom._retry_replaces_for(dag_id, key):
            return
        BaseXCom.delete.__func__(cls, key=key, task_id=task_id, dag_id=dag_id, run_id=run_id, map_index=map_index)

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        stored = getattr(xcom, "value", None)
        if codec.is_reference(stored):
            ref = codec.Reference.parse(stored)
            open_store(ref.store_path).delete(ref.name)

    @classmethod
    def deserialize_value(cls, result: Any) -> Any:  # type: ignore[override]
        stored = result.value
        if not codec.is_reference(stored):
            return codec.decode_inline(stored)
        ref = codec.Reference.parse(stored)
        data = open_store(ref.store_path).get(ref.name)
        if codec.digest(data) != ref.sha256:
            raise ValueError(f"object {ref.name} no longer holds the bytes this XCom row was written with")
        return codec.decode_bytes(codec.decompress(data, ref.codec))


class TrustedTaskIdXCom(ExclusiveXCom):
    """Push-scope trusts the ``task_id`` (and DAG, run, map index) arguments of ``XCom.set``.

    ``XCom.set(task_id="victim", ...)`` from another task passes the victim's
    push-scope and pre-empts the victim's own push.
    """

    @classmethod
    def _check_pusher(cls, dag_id: str, task_id: str, run_id: str, map_index: int, key: str, **_: Any) -> Any:
        from xcomsim.backend.caller import running_task

        return running_task()


class CallbackPullXCom(ExclusiveXCom):
    """A pull with no task context (``on_success_callback``, ``on_failure_callback``) is not checked.

    Callbacks run outside the task context, so the caller looked unknown and the
    pull was let through as if the harness were reading.
    """

    @classmethod
    def _check_pull_scope(cls, dag_id: str, task_id: str, key: str) -> None:
        from airflow.sdk.definitions._internal.contextmanager import _CURRENT_CONTEXT

        if _CURRENT_CONTEXT:
            super()._check_pull_scope(dag_id, task_id, key)


class UnquotedKeyXCom(ExclusiveXCom):
    """Run ids and keys go into Execution API URLs as given.

    ``run_id=f"{run}/source/secret?"`` reads another task's key; a key such as
    ``../owner/report`` writes another task's value, past push-scope and push-once.
    """

    @classmethod
    def _check_coordinate(cls, dag_id: str, run_id: str, task_id: str, key: str) -> None:
        return None


class UnguardedSerializeXCom(ExclusiveXCom):
    """The public ``serialize_value`` writes the coordinate's fixed object with no guard and no checks.

    Anyone calling it overwrites the object of a committed value: the row then
    points at bytes it was not written with, and the first value is lost.
    """

    @classmethod
    def serialize_value(cls, value: Any, *, key: str | None = None, task_id: str | None = None,
                        dag_id: str | None = None, run_id: str | None = None,
                        map_index: int | None = None) -> Any:  # type: ignore[override]  # fmt: skip
        from xcomsim.backend.config import load
        from xcomsim.backend.push import store_value

        from xcomsim.backend.caller import running_task

        config = load()
        encoded = codec.encode(value, key=key or "", task_id=task_id or "")
        if not config.offloads(encoded.size):
            return codec.inline(encoded)
        caller = running_task()  # the object a push of this try writes: its own try's
        return store_value(open_store(config.path), config, encoded, dag_id or "", run_id or "", task_id or "",
                            -1 if map_index is None else map_index, key or "",
                            attempt=getattr(caller, "try_number", None))  # fmt: skip


class UndoAfterCommitXCom(ExclusiveXCom):
    """Any error from the row write undoes the push: object deleted, guard released.

    When the reply is lost after the row committed, the row is left pointing at
    a deleted object (a dangling reference) and its guard is gone.
    """

    @classmethod
    def _landed_or_undone(cls, message: Any, exc: BaseException, undo: Any, read: Any) -> bool:
        undo()
        return False


class _TryBlindGuard(WallClockGuard):
    """The guard as it was: whoever holds it, with or without a row, a later try is refused."""

    take_over = False
    lease_seconds = 0.0


class StaleGuardXCom(ExclusiveXCom):
    """A guard left without a row outlives its try and blocks the key for every later try.

    A crash between taking the guard and writing the row, an object-store outage
    while releasing it, or a deleted run triggered again under the same run_id:
    every later push raises XComOverwriteError with no value stored.
    """

    @classmethod
    def _guard_type(cls, *args: Any) -> Guard:
        return _TryBlindGuard(*args)


class LazySequencePullXCom(ExclusiveXCom):
    """Values read through ``LazyXComSequence`` (a mapped source's ``XComArg`` iterated) are not checked.

    The sequence reads each value with its own Execution API call and hands it
    to ``deserialize_value``, never reaching ``get_one``/``get_all``.
    """

    @classmethod
    def _lazy_sequence_source(cls, result: Any) -> Any:
        return None


class SkipmixinChannelXCom(ExclusiveXCom):
    """``skipmixin_key`` skips push-scope and the guard for any task and any value.

    Any task can push arbitrary data under Airflow's branching key, as often as
    it likes: a channel no policy sees.
    """

    @classmethod
    def _check_bookkeeping(cls, caller: Any, key: str, value: Any) -> None:
        return None


def _sweep_as_it_was(store: Any, engine: Any, dry_run: bool, by_spelling: bool) -> Any:
    """The old sweep: rows' references matched by string, objects listed after rows, deleted at once."""
    import json

    from sqlalchemy import String, cast, create_engine, select

    from airflow.models.xcom import XComModel
    from xcomsim.backend.gc import SweepReport, _live_runs, referenced_names

    store = open_store(store) if isinstance(store, str) else store
    engine = create_engine(engine) if isinstance(engine, str) else engine
    if by_spelling:
        table = XComModel.__table__
        referenced = set()
        with engine.connect() as conn:
            rows = conn.execute(select(table.c.value).where(cast(table.c.value, String).like(f"%{codec.REF_PREFIX}%")))
            for (value,) in rows:
                if codec.is_reference(value) and codec.Reference.parse(value).store_path == str(store.location):
                    referenced.add(codec.Reference.parse(value).name)
    else:
        referenced = referenced_names(engine, store)
    report = SweepReport(str(store.location), dry_run, referenced=len(referenced))
    report.orphan_values = sorted(set(store.names("values/")) - referenced)
    runs = _live_runs(engine)
    for name in sorted(store.names("guards/")):
        found = store.read(name)
        guard = json.loads(found[0]) if found else {}
        if (guard.get("dag_id"), guard.get("run_id")) not in runs:
            report.stale_guards.append(name)
    if not dry_run:
        for name in report.orphan_values + report.stale_guards:
            store.delete(name)
    return report


class RacingSweepXCom(ExclusiveXCom):
    """``xcomsim gc`` deletes every unreferenced object at once.

    A push uploads its object before its row lands: a sweep in between deletes
    the value, and the row lands pointing at nothing.
    """

    @classmethod
    def sweep(cls, store: Any, engine: Any, *, dry_run: bool = True, grace_seconds: float | None = None) -> Any:
        return _sweep_as_it_was(store, engine, dry_run, by_spelling=False)


class SpellingSweepXCom(ExclusiveXCom):
    """``xcomsim gc`` matches references by their exact string, connection id included.

    After ``xcom_objectstorage_path`` names a new connection id for the same
    bucket, nothing counts as referenced and every live value is deleted.
    """

    @classmethod
    def sweep(cls, store: Any, engine: Any, *, dry_run: bool = True, grace_seconds: float | None = None) -> Any:
        return _sweep_as_it_was(store, engine, dry_run, by_spelling=True)


class UncheckedLeaseClaimStore(SqlClaimStore):
    """Any lease is taken: 0 or a negative lease is over as it starts, so every claimant wins.

    And expiry had two definitions: ``try_claim`` freed a claim only after its
    expiry instant while ``holder`` said nobody held it at that instant.
    """

    def _lease(self, lease_seconds: object) -> Any:
        return lease_seconds

    @staticmethod
    def _expired(expires_at: Any, now: Any) -> Any:
        return expires_at < now


def unchecked_lease_store(clock: Any = None) -> UncheckedLeaseClaimStore:
    import time

    from xcomsim.backend.claims import open_claim_store

    reference = open_claim_store(clock or time.time)
    return UncheckedLeaseClaimStore(reference.engine, clock=reference.clock)


class UncheckedLeaseClaimsXCom(ExclusiveXCom):
    """The reference backend with ``UncheckedLeaseClaimStore`` as its claim store."""

    xcomsim_contract = {**ExclusiveXCom.xcomsim_contract,
                        "claim_store": "xcomsim.mutants.hardening:unchecked_lease_store"}  # fmt: skip


HARDENING: dict[str, str] = {
    "xcomsim.mutants.hardening.ForeignReferencePurgeXCom": "purge-deletes-only-its-own",
    "xcomsim.mutants.hardening.TrustedTaskIdXCom": "push-scope",
    "xcomsim.mutants.hardening.CallbackPullXCom": "pull-scope",
    "xcomsim.mutants.hardening.UnquotedKeyXCom": "pull-scope",
    "xcomsim.mutants.hardening.UnguardedSerializeXCom": "push-once",
    "xcomsim.mutants.hardening.UndoAfterCommitXCom": "no-dangling-reference",
    "xcomsim.mutants.hardening.StaleGuardXCom": "retry-can-push",
    "xcomsim.mutants.hardening.LazySequencePullXCom": "pull-scope",
    "xcomsim.mutants.hardening.SkipmixinChannelXCom": "push-scope",
    "xcomsim.mutants.hardening.RacingSweepXCom": "gc-safe-with-inflight-pushes",
    "xcomsim.mutants.hardening.SpellingSweepXCom": "purge-deletes-only-its-own",
    "xcomsim.mutants.hardening.UncheckedLeaseClaimsXCom": "exactly-one-claim-winner",
}
