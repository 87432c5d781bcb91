"""Callers: a task writes (pushes or deletes) only its own XComs, one coordinate is one XCom whatever
type its map index came as, and a refused push leaves nothing behind.

A backend can check who pushes and still let anyone delete: ``XCom.delete`` and
``XCom.purge`` take the coordinate as arguments. It can compare map indexes
with ``==`` and name its guard and object by their JSON form (``-1.0`` and
``-1`` then pass as one task and write as two). And it can refuse a push after
taking its push-once guard, leaving the guard to refuse the task's next push of
the key although nothing is stored.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from xcomsim.checks import InvariantViolation, Observation, require, same
from xcomsim.conformance.examples import guarantee, one_task, start
from xcomsim.conformance.push_once import refuses_second_push, require_claimed
from xcomsim.strategies import Push

_fresh = itertools.count()


def too_deep(depth: int = 300) -> Any:
    """A value json serialises but Airflow's ``SetXCom`` model refuses (nested deeper than it validates)."""
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _short(exc: BaseException | None) -> str:
    return "ok" if exc is None else f"{type(exc).__name__}: {str(exc)[:100]}"


class CallerTests:
    @guarantee("push-scope")
    def test_a_task_deletes_only_its_own_xcoms(self, xcomsim_env: Any, scoping: Any, offload: Any,
                                               offloaded: Any) -> None:  # fmt: skip
        """A task that may push nothing calls ``XCom.delete`` and ``XCom.purge`` with another task's coordinate
        (and that task's row, read raw): the other task's value must still pull as pushed."""
        if scoping is None:
            pytest.skip("not claimed: override the 'scoping' fixture, or declare xcomsim_contract['scoping']")
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.task_context import thread_local_task_state

        owner = next(t for t, keys in scoping.pushes.items() if keys)
        outsider = next(t for t, keys in scoping.pushes.items() if not keys)
        key = sorted(scoping.pushes[owner])[0]
        if offload is not None:
            xcomsim_env.set_config(offload[0])
        value = offloaded(next(_fresh)) if offloaded is not None else "the owner's value"
        with thread_local_task_state():
            handles = dict(zip([owner, outsider], start(scoping.dag, [owner, outsider])))
            with handles[owner].active() as ti:
                ti.xcom_push(key=key, value=value)
                raw = XCom._get_xcom_db_ref(key=key, dag_id=ti.dag_id, task_id=owner, run_id=ti.run_id, map_index=-1)
                coordinate = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": owner, "map_index": -1, "key": key}
            outcomes = []
            with handles[outsider].active():
                for name, attempt in (("purge", lambda: XCom.purge(SimpleNamespace(**coordinate, value=raw.value))),
                                      ("delete", lambda: XCom.delete(**coordinate))):  # fmt: skip
                    raised = None
                    try:
                        attempt()
                    except Exception as exc:  # noqa: BLE001 - judged by what the owner pulls below
                        raised = exc
                    outcomes.append(f"{outsider} {name}s {owner}'s {key!r}: {_short(raised)}")
            try:
                with handles[owner].active() as ti:
                    pulled = ti.xcom_pull(task_ids=owner, key=key)
                after = "as pushed" if same(pulled, value) else f"as {str(pulled)[:60]!r}"
            except Exception as exc:  # noqa: BLE001 - reported below
                after = f"not at all ({_short(exc)})"
        if after != "as pushed":
            raise InvariantViolation("push-scope", [
                f"task {outsider!r} may push nothing, yet after its delete and purge of task {owner!r}'s "
                f"{key!r} that value pulls {after}"], "\n".join(outcomes))  # fmt: skip

    @guarantee("push-once")
    def test_an_equal_map_index_of_another_type_is_the_same_xcom(self, xcomsim_env: Any, contract_dag: Any,
                                                                 push_once: bool | None) -> None:  # fmt: skip
        """After a push of ``k``, ``XCom.set`` of ``k`` with ``map_index=-1.0`` (equal to ``-1``) must be
        refused or leave the first value: it is the same XCom."""
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.task_context import thread_local_task_state

        key = f"alias{next(_fresh)}"
        with thread_local_task_state():
            handle = one_task(contract_dag)
            require_claimed(push_once, handle)
            if not refuses_second_push(handle):
                pytest.skip("a plain second push is not refused: push-once is judged by the second-push tests")
            with handle.active() as ti:
                ti.xcom_push(key=key, value="first")
                try:
                    XCom.set(key, "second", dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=-1.0)
                    second = "accepted"
                except Exception as exc:  # noqa: BLE001 - refusing is keeping
                    second = _short(exc)
                pulled = ti.xcom_pull(task_ids=ti.task_id, key=key)
        if pulled != "first":
            raise InvariantViolation("push-once", [
                f"push {key}='first' (map_index -1), then XCom.set({key!r}, 'second', map_index=-1.0) -> {second}: "
                f"a pull gives {pulled!r}; -1.0 == -1 is the same XCom, whose first value must stay"])  # fmt: skip

    @guarantee("refusal-leaves-nothing")
    def test_a_refused_push_leaves_nothing_behind(self, xcomsim_env: Any, contract_dag: Any) -> None:
        """A value Airflow's row model refuses, then an ordinary value of the same key in the same try."""
        from xcomsim.conformance.stores import stored_values
        from xcomsim.scheduler.workload import run_workload
        from xcomsim.task_context import thread_local_task_state

        key = f"refused{next(_fresh)}"
        with thread_local_task_state():
            handle = one_task(contract_dag)
            history = run_workload([[Push(key, too_deep()), Push(key, "fallback")]], dag=contract_dag, handle=handle)
            stored = stored_values(xcomsim_env, contract_dag.dag_id, handle.run_id)
        require("refusal-leaves-nothing", Observation(history, {key: stored[key]} if key in stored else {}),
                history.describe())  # fmt: skip
