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
from xcomsim.strategies import Push, sized_string

NOT_CLAIMED = ("not claimed (same as Airflow): a second push replaces the first, as Airflow's BaseXCom does; "
               "declare xcomsim_contract['push_once'] = True to claim it")  # fmt: skip
_probes = itertools.count()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"<{type(value).__name__} of {len(value)}>"


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
    def test_a_direct_serialize_value_changes_no_committed_value(
        self, xcomsim_env: Any, contract_dag: Any, push_once: bool | None, offload: Any
    ) -> None:
        """Operators and hooks call ``XCom.serialize_value`` themselves (to size a value, to build a row):
        called with a committed XCom's coordinates, it must not change what a pull of that XCom returns
        (a backend that writes its object there, unguarded, overwrites the committed value's bytes)."""
        from xcomsim.task_context import thread_local_task_state

        pairs = [("first", "second")]
        if offload is not None and offload[1] is not None:
            xcomsim_env.set_config(offload[0])
            pairs.append((sized_string(max(64, offload[1] * 4)), sized_string(max(64, offload[1] * 4) + 1)))
        with thread_local_task_state():
            handle = one_task(contract_dag)
            require_claimed(push_once, handle)
            backend = xcomsim_env.backend
            for n, (first, second) in enumerate(pairs):
                key = f"d{n}"
                with handle.active() as ti:
                    ti.xcom_push(key=key, value=first)
                    try:
                        backend.serialize_value(second, key=key, task_id=ti.task_id, dag_id=ti.dag_id,
                                                run_id=ti.run_id, map_index=ti.map_index)  # fmt: skip
                    except Exception:  # noqa: BLE001 - refusing is keeping
                        pass
                    try:
                        pulled = _short(ti.xcom_pull(task_ids=ti.task_id, key=key))
                    except Exception as exc:  # noqa: BLE001 - reported below
                        why = str(exc).splitlines()[0] if str(exc) else ""
                        pulled = f"{type(exc).__name__} ({why if len(why) <= 36 else '...' + why[-36:]})"
                assert pulled == _short(first), (
                    f"[push-once] serialize_value({_short(second)}, key={key!r}, ...): pull of {key!r} gives "
                    f"{pulled}, not {_short(first)}"
                )

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
