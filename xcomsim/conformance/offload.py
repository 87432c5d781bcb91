"""Offload: where values go, that deletes and reruns leave no orphan, that crashes leave no dangling row.

The threshold is the declared one, else the discovered one (``discovery``); a backend that
offloads by type, item count or depth is tested with values of that trigger (the kit's
``offloaded`` fixture);
objects are looked for in every store (``stores``) and matched to rows by what
the backend was seen to write (``references``). A row dangles when the backend
cannot read it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from xcomsim.checks import InvariantViolation, require
from xcomsim.checks.registry import MAX_REFERENCE
from xcomsim.conformance.examples import guarantee, one_task
from xcomsim.conformance.references import dangling, offload_violations, orphans, refers_to
from xcomsim.conformance.stores import observe, read_rows, store_sizes
from xcomsim.scheduler.faults import FaultPlan, WorkerCrash, injecting
from xcomsim.strategies import sized_string
from xcomsim.strategies._internal.payloads import utf8_sized_string

NOT_CLAIMED = ("not claimed: no offload declared (xcomsim_contract['offload'] or the 'offload' fixture) "
               "and none discovered")  # fmt: skip


def offload_threshold(env: Any, offload: Any) -> int | None:
    """Apply the offload configuration and return its threshold (None: it offloads, but not by size), or skip."""
    if offload is None:
        pytest.skip(NOT_CLAIMED)
    config, threshold = offload
    env.set_config(config)
    return None if threshold is None else int(threshold)


def offloading(env: Any, offload: Any, offloaded: Callable[[int], Any] | None) -> Callable[[int], Any]:
    """Apply the offload configuration and return the factory of values that offload, or skip as not claimed."""
    offload_threshold(env, offload)
    if offloaded is None:
        pytest.skip(NOT_CLAIMED)
    return offloaded


def _same_threshold(declared: int, found: int) -> bool:
    return declared == found or (declared <= 1 and found == 0)


class OffloadTests:
    @guarantee("offload-threshold")
    def test_offload_at_and_above_threshold_only(self, xcomsim_env: Any, contract_dag: Any, offload: Any,
                                                 request: Any) -> None:  # fmt: skip
        """Around the byte threshold; and each other discovered trigger (a type, a count, a depth) offloads to a
        short reference."""
        threshold = offload_threshold(xcomsim_env, offload)
        from xcomsim.task_context import thread_local_task_state

        if threshold is None:
            self._each_trigger_offloads(xcomsim_env, contract_dag, request.getfixturevalue("discovered"))
            return

        sizes = sorted({s for s in (threshold - 1, threshold, threshold + 1, threshold * 8) if s >= 2} | {2, 64})
        pushed = {f"size_{s}": (sized_string(s), s) for s in sizes}
        if threshold > 2:  # multi-byte text at the threshold: 2 bytes a character
            text = utf8_sized_string(threshold)
            pushed[f"multibyte_{threshold}"] = (text, len(text.encode()) + 2)
        before = frozenset(store_sizes(xcomsim_env))
        with thread_local_task_state():
            handle = one_task(contract_dag)
            with handle.active() as ti:
                for key, (value, _) in pushed.items():
                    ti.xcom_push(key=key, value=value)
        obs = observe(xcomsim_env, handle.run_id)
        problems = offload_violations(obs.rows or [], dict(obs.objects or {}), before, threshold, pushed)
        if problems:
            raise InvariantViolation("offload-threshold", problems)
        self._each_trigger_offloads(xcomsim_env, contract_dag, request.getfixturevalue("discovered"))

    def _each_trigger_offloads(self, env: Any, dag: Any, discovered: Any) -> None:
        from xcomsim.task_context import thread_local_task_state

        problems = []
        with thread_local_task_state():
            handle = one_task(dag)
            for n, (trigger, value) in enumerate(discovered._triggered(7)):
                before = frozenset(store_sizes(env))
                with handle.active() as ti:
                    ti.xcom_push(key=f"trigger_{n}", value=value)
                row = next(r["value"] for r in env.xcom_rows() if r["run_id"] == handle.run_id
                           and r["key"] == f"trigger_{n}")  # fmt: skip
                new = [name for name in store_sizes(env) if name not in before and refers_to(row, name)]
                if not new or len(str(row).encode()) > MAX_REFERENCE:
                    problems.append(f"{trigger}: {type(value).__name__} pushed, the row ({len(str(row).encode())} B) "
                                    f"{'names no new object' if not new else 'is longer than a reference'}")  # fmt: skip
        if problems:
            raise InvariantViolation("offload-threshold", problems)

    @guarantee("offload-threshold")
    def test_declared_threshold_is_the_discovered_one(self, contract: Any, discovered: Any) -> None:
        if contract.offload is None:
            pytest.skip("not claimed: no offload declared (discovery alone decides the other offload tests)")
        declared = contract.offload[1]
        if discovered.error:
            raise InvariantViolation("offload-threshold", [f"declared {declared}, but {discovered.describe()}"])
        if not discovered.offloads or not _same_threshold(declared, discovered.threshold or 0):
            behaves = f"behaves as {discovered.threshold}" if discovered.offloads else "never offloads"
            raise InvariantViolation("offload-threshold", [f"declared {declared}, {behaves} ({discovered.describe()})"])

    @guarantee("purge-leaves-no-orphan")
    def test_delete_leaves_no_object_of_the_xcom(self, xcomsim_env: Any, contract_dag: Any, offload: Any,
                                                 offloaded: Any) -> None:  # fmt: skip
        value = offloading(xcomsim_env, offload, offloaded)(0)
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = one_task(contract_dag)
            before = set(store_sizes(xcomsim_env))
            with handle.active() as ti:
                ti.xcom_push(key="big", value=value)
                appeared = set(store_sizes(xcomsim_env)) - before
                assert appeared, "an offloaded value wrote no object to any store"
                XCom.delete(key="big", dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
        left = appeared & set(store_sizes(xcomsim_env))
        assert not left, f"[purge-leaves-no-orphan] after XCom.delete the store still holds {sorted(left)}"

    @guarantee("purge-leaves-no-orphan")
    def test_reruns_leave_at_most_one_object_per_live_xcom(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any, offloaded: Any
    ) -> None:
        """A DAG-run clear deletes rows without calling purge; the task then runs again."""
        value = offloading(xcomsim_env, offload, offloaded)(0)
        threshold = offload[1] or 0
        from sqlalchemy import text

        from xcomsim.task_context import thread_local_task_state

        reruns = 20
        before = frozenset(store_sizes(xcomsim_env))
        with thread_local_task_state():
            handle = one_task(contract_dag)
            for attempt in range(reruns):
                if attempt:
                    with xcomsim_env.engine.begin() as conn:  # the clear: rows go, purge is not called
                        conn.execute(text("DELETE FROM xcom WHERE run_id = :r"), {"r": handle.run_id})
                    handle.finish("failed")
                    handle.start()
                with handle.active() as ti:
                    ti.xcom_push(key="big", value=value)
        obs = observe(xcomsim_env, handle.run_id)
        left = orphans(obs.rows or [], dict(obs.objects or {}), before, max(16, threshold))
        if left:
            raise InvariantViolation("purge-leaves-no-orphan", [
                f"after {reruns} reruns {len(left)} value-sized object(s) no row references: {left[:3]}"])

    @guarantee("no-dangling-reference")
    def test_crash_at_any_io_of_a_push_leaves_no_dangling_reference(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any, offloaded: Any
    ) -> None:
        """The worker dies at each I/O point of an offloaded push in turn (e.g. between upload and row)."""
        value = offloading(xcomsim_env, offload, offloaded)(0)
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = one_task(contract_dag)
            dry = FaultPlan({})
            with injecting(dry), handle.active() as ti:
                ti.xcom_push(key="dry", value=value)
            io_calls = dry.seen["main"]
            for index, io in enumerate(io_calls):
                try:
                    with injecting(FaultPlan({index: "crash"})), handle.active() as ti:
                        ti.xcom_push(key=f"crash_{index}", value=value)
                except WorkerCrash:
                    pass
                story = f"the worker crashed at I/O #{index} of the push ({io}); its I/O: {io_calls}"
                require("no-dangling-reference", observe(xcomsim_env, handle.run_id), story)
                problems = dangling(read_rows(xcomsim_env, contract_dag.dag_id, handle.run_id))
                if problems:
                    raise InvariantViolation("no-dangling-reference", problems, story)
