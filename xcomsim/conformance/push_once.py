"""Push-once: a second push of an XCom raises and the first value stays, even when pushers race."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from xcomsim.checks import Observation, require
from xcomsim.conformance.baseline import baseline_allows_overwrite
from xcomsim.conformance.examples import FirstFailure, examples, guarantee, one_task
from xcomsim.conformance.stores import stored_values
from xcomsim.scheduler import hypothesis_chooser
from xcomsim.scheduler.workload import run_workload
from xcomsim.strategies import Push

NOT_CLAIMED = ("not claimed (same as Airflow): a second push replaces the first, as Airflow's BaseXCom does; "
               "declare xcomsim_contract['push_once'] = True to claim it")  # fmt: skip
_probes = itertools.count()


def refuses_second_push(handle: Any) -> bool:
    key = f"xcomsim_push_once_probe_{next(_probes)}"
    with handle.active() as ti:
        ti.xcom_push(key=key, value="first")
        try:
            ti.xcom_push(key=key, value="second")
        except Exception:  # noqa: BLE001 - any refusal will do
            return True
    return False


def require_claimed(push_once: bool | None, handle: Any) -> None:
    """Skip as not claimed, unless declared or the backend evidently guards (it refuses a second push)."""
    if push_once is False:
        pytest.skip("not claimed: xcomsim_contract['push_once'] is False")
    if push_once is None and not refuses_second_push(handle) and baseline_allows_overwrite(handle):
        pytest.skip(NOT_CLAIMED)


class PushOnceTests:
    @guarantee("push-once")
    def test_second_push_raises_and_first_value_stays(self, xcomsim_env: Any, contract_dag: Any,
                                                      push_once: bool | None) -> None:  # fmt: skip
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = one_task(contract_dag)
            require_claimed(push_once, handle)
            with handle.active() as ti:
                ti.xcom_push(key="k", value="first")
                with pytest.raises(Exception) as raised:  # noqa: PT011 - any refusal will do
                    ti.xcom_push(key="k", value="second")
                assert raised.type is not AssertionError
                assert ti.xcom_pull(task_ids=ti.task_id, key="k") == "first"

    @guarantee("push-once")
    def test_racing_pushers_exactly_one_wins(self, xcomsim_env: Any, contract_dag: Any,
                                             push_once: bool | None) -> None:  # fmt: skip
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = one_task(contract_dag)  # one task instance; each example races for a new key
            require_claimed(push_once, handle)
            run_workload([[Push("warm", 0)]], dag=contract_dag, handle=handle)  # same I/O every example
            keys = iter(range(10**9))

            counter = FirstFailure()

            @examples()
            @given(values=st.lists(st.integers(0, 99), min_size=2, max_size=3), data=st.data())
            @counter.count
            def race(values: list[int], data: Any) -> None:
                key = f"k{next(keys)}"
                workload = [[Push(key, v)] for v in values]
                history = run_workload(workload, dag=contract_dag, chooser=hypothesis_chooser(data), handle=handle)
                note(history.describe())
                stored = stored_values(xcomsim_env, contract_dag.dag_id, history.run_id)
                require("push-once", Observation(history, {key: stored[key]} if key in stored else {}))

            counter.run(race)
