"""Liveness and cleanup after failures: a test mixin for the conformance kit.

Three guarantees a backend can keep on every happy path and still lose after
one failure:

* ``retry-can-push``: a push that crashed or failed (at any of its I/O calls,
  including between its push-once guard and the row, or with the reply to the
  row write lost) does not stop the task's next try from pushing the key when
  no value is stored. Checked in the strictest push-once mode the backend
  offers (for ``xcomsim-policy`` backends: a policy without ``retry_replaces``).
* ``purge-deletes-only-its-own``: purge, and the backend's sweeper if it has
  one, delete no object that is not an XCom's own, even when a row holds a
  forged reference to it (made from the backend's own reference format,
  learned from what a push wrote).
* ``gc-safe-with-inflight-pushes``: a sweep that runs while pushes are under
  way deletes no value whose row lands (the scheduler interleaves the sweeper's
  reads with the pushes).

A lost reply after the row committed is also checked against
``no-dangling-reference`` (the row must stay pullable). A sweeper is optional:
declare it as ``xcomsim_contract["sweeper"]`` or ``xcomsim_sweeper`` on the
backend class (``"package.module:function"``, called with the test's
environment), or override the ``sweeper`` fixture; without one the gc
guarantee is "not claimed". Compose it with the kit::

    class TestMyXCom(XComBackendContract, LivenessContract):
        pass
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from xcomsim.checks import Observation, require
from xcomsim.checks.values import object_key
from xcomsim.conformance.verdict import CANNOT_TEST
from xcomsim.conformance.offload import offloading
from xcomsim.conformance.stores import read_rows
from xcomsim.scheduler import first_runnable, hypothesis_chooser, stop_at_harness_errors
from xcomsim.scheduler.faults import FaultPlan, fits
from xcomsim.scheduler.interception import matters
from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, run_workload, workload_dag
from xcomsim.strategies import Push, Retry, Sweep, Wait, sized_string

guarantee = pytest.mark.xcomsim_guarantee
_EXAMPLES = settings(deadline=None, report_multiple_bugs=False,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_FAULTS_AT_EACH_IO = ("crash", "crash-after", "api-lost-reply", "s3-503", "s3-outage", "redis-drop", "redis-outage")
_fresh = itertools.count()

# Objects a user keeps next to the XComs: never any XCom's own.
FOREIGN_S3_KEYS = ("data-lake/important/table.parquet", "reports/q3/summary.csv")
FOREIGN_REDIS_KEYS = ("app:session:42",)

Sweeper = Callable[[Any], Any]


def declared_sweeper(backend: type) -> Sweeper | None:
    """The sweeper a backend declares (``xcomsim_contract["sweeper"]`` or ``xcomsim_sweeper``), else its default."""
    raw = getattr(backend, "xcomsim_contract", None)
    path = (raw.get("sweeper") if isinstance(raw, Mapping) else None) or getattr(backend, "xcomsim_sweeper", None)
    if path is None:
        from xcomsim.backend.xcom import ExclusiveXCom

        return reference_sweeper if issubclass(backend, ExclusiveXCom) else None
    if callable(path):
        return path
    module, _, attr = str(path).partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{backend.__qualname__}'s sweeper {path!r} cannot be loaded: {exc}") from None


def reference_sweeper(env: Any) -> Any:
    """``xcomsim gc`` on the reference backend's stores, deleting: the backend's own ``sweep`` (mutants override
    it), on each store values live in (the guards' store first, as ``xcomsim gc`` does)."""
    reports = env.backend.sweep_all(env.engine, dry_run=False)
    return reports[0] if len(reports) == 1 else [name for report in reports for name in deleted_names(report)]


def deleted_names(report: Any) -> list[str]:
    """What a sweeper deleted: a ``SweepReport``'s orphans and guards, or the names it returned."""
    if hasattr(report, "orphan_values"):
        return list(report.orphan_values) + list(report.stale_guards)
    return list(report or [])


def readback(env: Any, dag_id: str, run_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Every row of the run pulled through the backend: (key -> value, key -> why it could not be pulled)."""
    records = read_rows(env, dag_id, run_id)
    return ({r.key: r.value for r in records if not r.error}, {r.key: str(r.error) for r in records if r.error})


def _strict_dag(contract: Any, keys: list[str]) -> Any:
    """A workload DAG in the backend's strictest push-once mode (an XComPolicy without retry_replaces)."""
    dag = workload_dag(f"xcomsim_contract_strict_{next(_fresh)}")
    if getattr(contract, "scoping", None) == "xcomsim-policy":
        from xcomsim.backend import XComPolicy

        XComPolicy(pushes={WORKLOAD_TASK_ID: keys}, retry_replaces=False).attach(dag)
    return dag


def _start(dag: Any) -> Any:
    from xcomsim.task_context import start_task_instances

    (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
    return handle


def _offloaded_size(offload: Any) -> int | None:
    return None if offload is None or offload[1] is None else int(offload[1]) * 4


@dataclass(frozen=True)
class _Learned:
    key: str  # the XCom key pushed
    name: str  # the object its push wrote (as store_sizes names it)
    token: str  # the part of that name its row holds


def _learn(env: Any, handle: Any, key: str, value: Any, first: bool = False) -> _Learned:
    """Push ``key`` for real and learn which object it wrote and how its row names that object.

    ``first``: no object at all means the backend stores none (not claimed); for a later push it
    means the push only changed an object that was there (one object per run, content addressing),
    which the kit cannot forge from (not run).
    """
    from xcomsim.conformance.references import token_in
    from xcomsim.conformance.stores import store_sizes

    before = set(store_sizes(env))
    with handle.active() as ti:
        ti.xcom_push(key=key, value=value)
    row = next(r for r in env.xcom_rows() if r["run_id"] == handle.run_id and r["key"] == key)
    new = sorted(set(store_sizes(env)) - before)
    if not new and first:
        pytest.skip(f"not claimed: a push of a {type(value).__name__} wrote no object to any store, so purge has "
                    "nothing of its own to delete")  # fmt: skip
    if not new:
        pytest.skip(f"{CANNOT_TEST}the push of {key!r} wrote no new object (its row {str(row['value'])[:60]!r}), "
                    "so no second object can be named by a forged row")  # fmt: skip
    named = [(name, token) for name in new if (token := token_in(row["value"], name))]
    if not named:
        pytest.skip(f"{CANNOT_TEST}the row {str(row['value'])[:80]!r} names none of the objects the push wrote "
                    f"{new[:3]} (by key, file name or stem), so no reference can be forged")  # fmt: skip
    name, token = max(named, key=lambda nt: len(nt[1]))
    return _Learned(key, name, token)


def _beside(name: str) -> tuple[str, ...]:
    """A user's objects in the same store as ``name`` (same bucket, Redis DB or folder)."""
    if name.startswith("s3://"):
        bucket = name.split("/", 3)[2]
        return tuple(f"s3://{bucket}/{k}" for k in FOREIGN_S3_KEYS)
    if name.startswith("redis"):
        store = name.partition(":")[0]
        return tuple(f"{store}:{k}" for k in FOREIGN_REDIS_KEYS)
    folder = name.rsplit("/", 1)[0]
    return tuple(f"{folder}/{k.replace('/', '-')}" for k in FOREIGN_S3_KEYS)


def _replace(value: Any, old: str, new: str) -> Any:
    """``value`` (a row's JSON) with ``old`` replaced by ``new`` in every string, keys included."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    if isinstance(value, dict):
        return {_replace(k, old, new): _replace(v, old, new) for k, v in value.items()}
    return value


def _rewrite(env: Any, run_id: str, key: str, old: str, new: str) -> None:
    """Rewrite one row in place, as a REST API PATCH of the XCom entry would, naming ``new`` for ``old``."""
    from sqlalchemy import update

    from airflow.models.xcom import XComModel

    row = next(r for r in env.xcom_rows() if r["run_id"] == run_id and r["key"] == key)
    forged = _replace(row["value"], old, new)
    if forged == row["value"]:
        pytest.skip(f"{CANNOT_TEST}{old!r} is in the row {str(row['value'])[:80]!r} only across strings, "
                    "so no reference can be forged")  # fmt: skip
    table = XComModel.__table__
    with env.engine.begin() as conn:
        conn.execute(update(table).where(table.c.run_id == run_id, table.c.key == key).values(value=forged))


class LivenessContract:
    """Tests only. Uses the kit's ``xcomsim_env``, ``contract``, ``contract_dag`` and ``offload`` fixtures."""

    @pytest.fixture
    def sweeper(self, xcomsim_env: Any) -> Sweeper | None:
        """The backend's garbage collector, called with the environment; None: not claimed."""
        return declared_sweeper(xcomsim_env.backend)

    # ---------------------------------------------------------------- retry-can-push
    @guarantee("retry-can-push")
    def test_a_crashed_or_failed_push_does_not_block_the_next_try(
        self, xcomsim_env: Any, contract: Any, offload: Any
    ) -> None:
        """Each fault at each I/O call of a push in turn, then the next try pushes the key again.

        A backend may hold a crashed try's keys for a lease (so a try still pushing cannot be
        overtaken); it declares ``xcomsim_contract["retry_lease"] = (config, seconds)`` and the next
        try comes once that much real time has passed.
        """
        from xcomsim.task_context import thread_local_task_state

        if offload is not None:
            xcomsim_env.set_config(offload[0])
        lease = 0.0
        if contract.retry_lease is not None:
            xcomsim_env.set_config(contract.retry_lease[0])
            lease = contract.retry_lease[1]
        value = sized_string(_offloaded_size(offload) or 64)
        keys = [f"k{n}" for n in range(64)] + ["dry"]
        dag = _strict_dag(contract, keys)
        with thread_local_task_state():
            handle = _start(dag)
            dry = FaultPlan({})
            run_workload([[Push("dry", value)]], dag=dag, handle=handle, faults=dry)  # the I/O of one push
            io_calls = dry.seen.get("w0", [])
            cases = [(i, kind) for i, io in enumerate(io_calls) if matters(io) for kind in _FAULTS_AT_EACH_IO
                     if fits(kind, io)][: len(keys) - 1]  # fmt: skip
            for (index, kind), key in zip(cases, keys):
                plan = FaultPlan({index: kind}, workers=frozenset({"w0"}))
                retry = [Wait(lease)] * bool(lease) + [Retry(), Push(key, value)]
                workload = [[Push(key, value)], retry]  # w0 runs whole, then w1
                history = run_workload(workload, dag=dag, handle=handle, faults=plan, chooser=first_runnable)
                stored, _ = readback(xcomsim_env, dag.dag_id, handle.run_id)
                story = (f"{kind} at I/O #{index} ({io_calls[index]}) of the first push; its I/O: {io_calls}\n"
                         f"{history.describe()}")  # fmt: skip
                require("retry-can-push", Observation(history, {key: stored[key]} if key in stored else {}), story)

    # ---------------------------------------------------------------- lost reply after the row committed
    @guarantee("no-dangling-reference")
    def test_a_lost_reply_after_the_row_committed_leaves_it_pullable(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any, offloaded: Any
    ) -> None:
        """The supervisor commits the row, the reply is lost, the push raises: the row must still be pullable."""
        from xcomsim.task_context import thread_local_task_state

        value = offloading(xcomsim_env, offload, offloaded)(0)
        with thread_local_task_state():
            handle = _start(contract_dag)
            dry = FaultPlan({})
            run_workload([[Push("dry", value)]], dag=contract_dag, handle=handle, faults=dry)
            writes = [i for i, io in enumerate(dry.seen.get("w0", [])) if io == "api SetXCom"]
            assert writes, f"a push sent no SetXCom message: {dry.seen}"
            plan = FaultPlan({writes[-1]: "api-lost-reply"})
            history = run_workload([[Push("lost", value)]], dag=contract_dag, handle=handle, faults=plan)
            _, unreadable = readback(xcomsim_env, contract_dag.dag_id, handle.run_id)
        problems = [f"row {key!r} cannot be pulled: {why}" for key, why in unreadable.items()]
        assert not problems, f"[no-dangling-reference] {problems}\n{history.describe()}"

    # ---------------------------------------------------------------- purge and sweeper: only their own
    @guarantee("purge-deletes-only-its-own")
    def test_purge_and_sweeper_delete_only_their_own(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any, offloaded: Any, sweeper: Sweeper | None
    ) -> None:
        """Rows forged to name another XCom's object (and a user's objects beside the XComs) are deleted.

        The forgery uses the backend's own reference format, learned from what its pushes wrote: the
        part of the object's name the row holds (its key, file name or uuid stem) is swapped for the
        target's. Rows get such contents in real life: Airflow 3's REST API lets a user rewrite an XCom
        entry, and a backend that stores a pushed string as is takes a lookalike for a reference.
        """
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.conformance.stores import plant, store_sizes
        from xcomsim.task_context import thread_local_task_state

        make = offloading(xcomsim_env, offload, offloaded)
        values = map(make, itertools.count())  # a distinct value per push: a content-addressed store writes each anew
        with thread_local_task_state():
            handle = _start(contract_dag)
            # keys of 8 characters or more: a row may name its object by the XCom key alone
            own = _learn(xcomsim_env, handle, "model_value", next(values), first=True)
            other = _learn(xcomsim_env, handle, "other_value", next(values))
            targets = {other.name: other.token}  # another XCom's object, named the way its row names it
            if own.token == object_key(own.name):  # the row holds the whole key: it can name any object
                for name in _beside(own.name):
                    plant(xcomsim_env, name, b"a user's data, not an XCom")
                    targets[name] = object_key(name)
            forged, refused = [], []
            for n, (name, token) in enumerate(sorted(targets.items())):
                victim = _learn(xcomsim_env, handle, f"forged_{n}", next(values))
                _rewrite(xcomsim_env, handle.run_id, victim.key, victim.token, token)
                forged.append(f"{victim.key!r} -> {name}")
            with handle.active() as ti:
                for n in range(len(forged)):
                    try:
                        XCom.delete(key=f"forged_{n}", dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id,
                                    map_index=-1)  # fmt: skip
                    except Exception as exc:  # noqa: BLE001 - refusing a forged row is keeping; the stores judge
                        refused.append(f"forged_{n}: {type(exc).__name__}")
            kept_rows = {r["key"] for r in xcomsim_env.xcom_rows() if r["run_id"] == handle.run_id} & {
                f"forged_{n}" for n in range(len(forged))}
            if kept_rows and not refused:
                pytest.skip(f"{CANNOT_TEST}XCom.delete kept the rows {sorted(kept_rows)} without an error, so purge "
                            "never ran on them")  # fmt: skip
            foreign = frozenset(targets)
            require("purge-deletes-only-its-own", Observation(objects=store_sizes(xcomsim_env), foreign=foreign),
                    f"after XCom.delete of rows forged to name other objects: {forged}"
                    + (f" (refused: {refused})" if refused else ""))  # fmt: skip
            if sweeper is not None:
                sweeper(xcomsim_env)
                require("purge-deletes-only-its-own", Observation(objects=store_sizes(xcomsim_env), foreign=foreign),
                        f"after the sweeper ran, with {sorted(foreign)} in the stores")  # fmt: skip


    # ---------------------------------------------------------------- gc with pushes in flight
    @guarantee("gc-safe-with-inflight-pushes")
    def test_a_sweep_racing_pushes_deletes_no_landed_value(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any, offloaded: Any, sweeper: Sweeper | None
    ) -> None:
        if sweeper is None:
            pytest.skip("not claimed: the backend declares no sweeper (xcomsim_contract['sweeper'] or "
                        "xcomsim_sweeper), or override the 'sweeper' fixture")  # fmt: skip
        from xcomsim.task_context import thread_local_task_state

        value = offloading(xcomsim_env, offload, offloaded)(0)
        keys = itertools.count()
        with thread_local_task_state():
            handle = _start(contract_dag)
            sweep = lambda: sweeper(xcomsim_env)  # noqa: E731
            run_workload([[Push("warm", value)], [Sweep()]], dag=contract_dag, handle=handle, sweeper=sweep)

            examples: list[int] = []

            @stop_at_harness_errors
            @_EXAMPLES
            @given(pushes=st.integers(1, 2), sweep_first=st.booleans(), data=st.data())
            def race(pushes: int, sweep_first: bool, data: Any) -> None:
                # Each example on an empty world: what earlier examples stored would make every sweep
                # list and read more (a hundred examples took minutes) and is not this race's business.
                xcomsim_env.reset()
                run = _start(contract_dag)
                examples.append(1)
                batch = next(keys)
                workers = [[Push(f"g{batch}_{n}", value)] for n in range(pushes)]
                workload = [[Sweep()], *workers] if sweep_first else [*workers, [Sweep()]]
                history = run_workload(workload, dag=contract_dag, handle=run, sweeper=sweep,
                                       chooser=hypothesis_chooser(data))  # fmt: skip
                note(history.describe())
                _, unreadable = readback(xcomsim_env, contract_dag.dag_id, run.run_id)
                try:
                    require("gc-safe-with-inflight-pushes", Observation(history, unreadable=unreadable),
                            history.describe())  # fmt: skip
                except AssertionError:
                    if not first:
                        first.append(len(examples))
                    raise

            first: list[int] = []
            try:
                race()
            except AssertionError as exc:
                if first:  # the same note the kit's properties add, read by the verdict and the catalogue
                    exc.add_note(f"xcomsim: first failure at example {first[0]} of the run")
                raise


__all__ = ["FOREIGN_REDIS_KEYS", "FOREIGN_S3_KEYS", "LivenessContract", "declared_sweeper", "readback",
           "reference_sweeper"]  # fmt: skip
