"""The contract any XCom backend can run: a test mixin plus fixtures to override.

Adopt it in a test module of your own (fsspec's ``tests/abstract`` is the model)::

    import pytest
    from xcomsim.conformance import XComBackendContract

    @pytest.mark.xcomsim(backend="my_pkg.xcom.MyXCom", config={"my.section.option": "..."})
    class TestMyXCom(XComBackendContract):
        @pytest.fixture
        def offload(self):            # claim offload: the config that sets a threshold, and it
            return {"my.section.threshold": "1000"}, 1000

and run it with ``pytest --xcomsim``. Each test is marked with the guarantee it
checks; the end of the run prints kept / broken / not claimed per guarantee.
The checks look at what landed (the ``xcom`` table, every S3 object and Redis
key of the test's stores), not at what the backend says about itself.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from xcomsim.checks import Observation, violations
from xcomsim.scheduler import hypothesis_chooser
from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, run_workload, workload_dag
from xcomsim.strategies import Push, serde_values, sized_string

guarantee = pytest.mark.xcomsim_guarantee
_EXAMPLES = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAX_REFERENCE = 1024


class _Value:
    def __init__(self, value: Any):
        self.value = value


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (a tuple is not a list, -0.0 is not 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def store_objects(env: Any) -> set[str]:
    """Every object in the test's S3 bucket and every key in its Redis."""
    return set(store_sizes(env))


def store_sizes(env: Any) -> dict[str, int]:
    """Every object of the test's stores (``s3://bucket/key``, ``redis:key``) and its size in bytes."""
    sizes = {}
    paginator = env.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=env.bucket):
        for obj in page.get("Contents", []):
            sizes[f"s3://{env.bucket}/{obj['Key']}"] = obj["Size"]
    for key in env.redis.keys("*"):
        try:
            sizes[f"redis:{key.decode()}"] = env.redis.strlen(key)
        except Exception:  # not a string value: count it, size unknown
            sizes[f"redis:{key.decode()}"] = 0
    return sizes


def _object_key(name: str) -> str:
    return name.split("/", 3)[3] if name.startswith("s3://") else name.removeprefix("redis:")


class XComBackendContract:
    """Tests only; the fixtures below are what an adopter overrides."""

    # ---------------------------------------------------------------- fixtures to override
    @pytest.fixture
    def contract_dag(self) -> Any:
        """The DAG whose one task instance the workers act as (attach a policy here if you need one)."""
        return workload_dag("xcomsim_contract")

    @pytest.fixture
    def offload(self) -> tuple[dict[str, Any], int] | None:
        """``(config, threshold)`` if the backend offloads values of ``threshold`` bytes and more; None: not claimed."""
        return None

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _task(dag: Any) -> Any:
        from xcomsim.task_context import start_task_instances

        (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
        return handle

    @staticmethod
    def _offload_threshold(env: Any, offload: Any) -> int:
        """Apply the claimed offload configuration and return its threshold, or skip as not claimed."""
        if offload is None:
            pytest.skip("not claimed: override the 'offload' fixture with (config, threshold)")
        config, threshold = offload
        env.set_config(config)
        return int(threshold)

    @staticmethod
    def _stored(env: Any, run_id: str) -> dict[str, Any]:
        return {r["key"]: r["value"] for r in env.xcom_rows() if r["run_id"] == run_id}

    # ---------------------------------------------------------------- push-once
    @guarantee("push-once")
    def test_second_push_raises_and_first_value_stays(self, xcomsim_env: Any, contract_dag: Any) -> None:
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = self._task(contract_dag)
            with handle.active() as ti:
                ti.xcom_push(key="k", value="first")
                with pytest.raises(Exception) as raised:  # noqa: PT011 - any refusal will do
                    ti.xcom_push(key="k", value="second")
                assert raised.type is not AssertionError
                assert ti.xcom_pull(task_ids=ti.task_id, key="k") == "first"

    @guarantee("push-once")
    def test_racing_pushers_exactly_one_wins(self, xcomsim_env: Any, contract_dag: Any) -> None:
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = self._task(contract_dag)  # one task instance; each example races for a new key
            run_workload([[Push("warm", 0)]], dag=contract_dag, handle=handle)  # same I/O every example
            keys = iter(range(10**9))

            @_EXAMPLES
            @given(values=st.lists(st.integers(0, 99), min_size=2, max_size=3), data=st.data())
            def race(values: list[int], data: Any) -> None:
                key = f"k{next(keys)}"
                workload = [[Push(key, v)] for v in values]
                history = run_workload(workload, dag=contract_dag, chooser=hypothesis_chooser(data), handle=handle)
                note(history.describe())
                rows = self._stored(xcomsim_env, history.run_id)
                stored = {key: xcomsim_env.backend.deserialize_value(_Value(rows[key]))} if key in rows else {}
                problems = violations("push-once", Observation(history, stored))
                assert not problems, "\n".join(problems)

            race()

    # ---------------------------------------------------------------- round trip
    @guarantee("round-trip-exact")
    def test_round_trip_is_exact(self, xcomsim_env: Any, contract_dag: Any) -> None:
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = self._task(contract_dag)
            keys = iter(range(10**9))

            @_EXAMPLES
            @given(value=serde_values())
            def round_trip(value: Any) -> None:
                key = f"v{next(keys)}"
                with handle.active() as ti:
                    ti.xcom_push(key=key, value=value)
                    back = ti.xcom_pull(task_ids=ti.task_id, key=key)
                assert same(back, value), f"pushed {value!r}, pulled {back!r}"

            round_trip()

    # ---------------------------------------------------------------- offload
    @guarantee("offload-threshold")
    def test_offload_at_and_above_threshold_only(self, xcomsim_env: Any, contract_dag: Any, offload: Any) -> None:
        threshold = self._offload_threshold(xcomsim_env, offload)
        from xcomsim.task_context import thread_local_task_state

        problems = []
        for size in (threshold - 1, threshold, threshold + 1, threshold * 8):
            before = store_objects(xcomsim_env)
            with thread_local_task_state():
                handle = self._task(contract_dag)
                with handle.active() as ti:
                    ti.xcom_push(key="sized", value=sized_string(size))
            new_objects = store_objects(xcomsim_env) - before
            row = self._stored(xcomsim_env, handle.run_id)["sized"]
            row_bytes = len(str(row).encode())
            if size >= threshold and (not new_objects or row_bytes > MAX_REFERENCE):
                problems.append(f"{size} B (>= {threshold}): {len(new_objects)} new object(s), row of {row_bytes} B")
            if size < threshold and row_bytes < size - 2:  # small bookkeeping objects (guards) are fine
                problems.append(f"{size} B (< {threshold}): not inline, row of {row_bytes} B")
        assert not problems, "; ".join(problems)

    # ---------------------------------------------------------------- purge and orphans
    @guarantee("purge-leaves-no-orphan")
    def test_delete_leaves_no_object_of_the_xcom(self, xcomsim_env: Any, contract_dag: Any, offload: Any) -> None:
        threshold = self._offload_threshold(xcomsim_env, offload)
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = self._task(contract_dag)
            before = store_objects(xcomsim_env)
            with handle.active() as ti:
                ti.xcom_push(key="big", value=sized_string(threshold * 8))
                appeared = store_objects(xcomsim_env) - before
                assert appeared, "an offloaded value wrote no object to any store"
                XCom.delete(key="big", dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
        left = appeared & store_objects(xcomsim_env)
        assert not left, f"after XCom.delete the store still holds {sorted(left)}"

    @guarantee("purge-leaves-no-orphan")
    def test_reruns_leave_at_most_one_object_per_live_xcom(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any
    ) -> None:
        """A DAG-run clear deletes rows without calling purge; the task then runs again."""
        threshold = self._offload_threshold(xcomsim_env, offload)
        from sqlalchemy import text

        from xcomsim.task_context import thread_local_task_state

        reruns = 20
        before = set(store_sizes(xcomsim_env))
        with thread_local_task_state():
            handle = self._task(contract_dag)
            for attempt in range(reruns):
                if attempt:
                    with xcomsim_env.engine.begin() as conn:  # the clear: rows go, purge is not called
                        conn.execute(text("DELETE FROM xcom WHERE run_id = :r"), {"r": handle.run_id})
                    handle.finish("failed")
                    handle.start()
                with handle.active() as ti:
                    ti.xcom_push(key="big", value=sized_string(threshold * 8))
        rows = [str(value) for value in self._stored(xcomsim_env, handle.run_id).values()]
        values = {n for n, size in store_sizes(xcomsim_env).items() if n not in before and size >= threshold}
        orphans = sorted(n for n in values if not any(_object_key(n) in row for row in rows))
        assert not orphans, f"{len(orphans)} object(s) after {reruns} reruns that no row references: {orphans[:3]}"
