"""The contract any XCom backend can run: a test mixin plus fixtures to override.

Adopt it in a test module of your own (fsspec's ``tests/abstract`` is the model)::

    import pytest
    from xcomsim.conformance import XComBackendContract

    @pytest.mark.xcomsim(backend="my_pkg.xcom.MyXCom", config={"my.section.option": "..."})
    class TestMyXCom(XComBackendContract):
        @pytest.fixture
        def offload(self):            # claim offload: the config that sets a threshold, and it
            return {"my.section.threshold": "1000"}, 1000

and run it with ``pytest --xcomsim`` — or declare the same on the backend class
(``xcomsim_contract``, see ``capabilities``) and run ``pytest --xcomsim
--xcomsim-backend=my_pkg.xcom.MyXCom``. Each test is marked with the guarantees
it checks; the end of the run prints kept / broken / not claimed per guarantee.
The checks look at what landed (the ``xcom`` table, every S3 object and Redis
key of the test's stores), not at what the backend says about itself.
"""

from __future__ import annotations

import functools
import itertools
from datetime import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from xcomsim.checks import Observation, ScopeAttempt, require, same
from xcomsim.conformance.capabilities import Capabilities, declared
from xcomsim.conformance.machine import XComMachine
from xcomsim.conformance.stores import observe, store_objects, store_sizes, stored_values
from xcomsim.scheduler import hypothesis_chooser
from xcomsim.scheduler.faults import FaultPlan, WorkerCrash, injecting
from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, run_workload, workload_dag
from xcomsim.strategies import Claim, Crash, Push, Release, Wait, serde_values, sized_string, workloads

guarantee = pytest.mark.xcomsim_guarantee
_EXAMPLES = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAX_REFERENCE = 1024
_fresh = itertools.count()

__all__ = ["ScopeSetup", "XComBackendContract", "same", "store_objects", "store_sizes"]


@dataclass(frozen=True)
class ScopeSetup:
    """A DAG whose backend-side scoping allows exactly ``pushes`` (task -> keys) and ``pulls`` (caller -> source -> keys)."""

    dag: Any
    pushes: Mapping[str, set[str]]
    pulls: Mapping[str, Mapping[str, set[str]]]
    keys: tuple[str, ...] = ("a", "b", "c")


def xcomsim_policy_scoping() -> ScopeSetup:
    """Three tasks under an ``XComPolicy``: the setup for backends that enforce xcomsim's policies."""
    from airflow.sdk import DAG, task

    from xcomsim.backend import XComPolicy

    pushes = {"producer": {"a", "b"}, "consumer": {"c"}, "outsider": set()}
    pulls = {"consumer": {"producer": {"a"}}, "outsider": {}}
    with DAG(f"xcomsim_contract_scope_{next(_fresh)}", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        for name in pushes:
            task(task_id=name)(lambda: None)()
    XComPolicy(pushes={t: sorted(k) for t, k in pushes.items() if k}, pulls=pulls).attach(dag)
    return ScopeSetup(dag, pushes, pulls)


class FirstFailure:
    """Counts a property's examples and notes on its failure how many ran before the first one failed."""

    def __init__(self) -> None:
        self.examples = 0
        self.first: int | None = None

    def count(self, test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)
        def counted(*args: Any, **kwargs: Any) -> None:
            self.examples += 1
            try:
                test(*args, **kwargs)
            except BaseException:
                self.first = self.first or self.examples
                raise

        return counted

    def run(self, test: Callable[[], None]) -> None:
        try:
            test()
        except BaseException as exc:
            if self.first is not None:
                exc.add_note(f"xcomsim: first failure at example {self.first} of the run")
            raise


def _start(dag: Any, task_ids: list[str] | None = None) -> list[Any]:
    from xcomsim.task_context import start_task_instances

    return start_task_instances(dag, [(t, -1) for t in task_ids or [WORKLOAD_TASK_ID]])


def _error(exc: BaseException | None) -> str | None:
    return None if exc is None else f"{type(exc).__name__}: {exc}"


class XComBackendContract:
    """Tests only; the fixtures below are what an adopter overrides."""

    @classmethod
    def checks_for(cls, guarantee_name: str) -> list[str]:
        """The names of the targeted contract tests that check ``guarantee_name`` (the model test aside)."""
        found = []
        for name in dir(cls):
            marks = getattr(getattr(cls, name), "pytestmark", []) if name.startswith("test_") else []
            names = {n for m in marks if m.name == "xcomsim_guarantee" for n in m.args}
            if guarantee_name in names and name != "test_backend_agrees_with_the_model":
                found.append(name)
        return found

    # ---------------------------------------------------------------- fixtures to override
    @pytest.fixture
    def contract(self, xcomsim_env: Any) -> Capabilities:
        """What the backend class declares (``xcomsim_contract``); the fixtures below default to it."""
        return declared(xcomsim_env.backend)

    @pytest.fixture(autouse=True)
    def _contract_config(self, xcomsim_env: Any, contract: Capabilities) -> None:
        if contract.config:
            xcomsim_env.set_config(contract.config)

    @pytest.fixture
    def contract_dag(self) -> Any:
        """The DAG whose one task instance the workers act as (attach a policy here if you need one)."""
        return workload_dag("xcomsim_contract")

    @pytest.fixture
    def offload(self, contract: Capabilities) -> tuple[dict[str, Any], int] | None:
        """``(config, threshold)`` if the backend offloads values of ``threshold`` bytes and more; None: not claimed."""
        return contract.offload

    @pytest.fixture
    def scoping(self, contract: Capabilities) -> ScopeSetup | None:
        """A ``ScopeSetup`` if the backend enforces key scoping; None: not claimed."""
        return xcomsim_policy_scoping() if contract.scoping == "xcomsim-policy" else None

    @pytest.fixture
    def claim_store(self, contract: Capabilities) -> Callable[[], Any] | None:
        """A zero-argument factory of the claim store (``try_claim``/``release``); None: not claimed."""
        return contract.claim_store

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _task(dag: Any) -> Any:
        (handle,) = _start(dag)
        return handle

    @staticmethod
    def _offload_threshold(env: Any, offload: Any) -> int:
        """Apply the claimed offload configuration and return its threshold, or skip as not claimed."""
        if offload is None:
            pytest.skip("not claimed: override the 'offload' fixture, or declare xcomsim_contract['offload']")
        config, threshold = offload
        env.set_config(config)
        return int(threshold)

    @staticmethod
    def _claims(claim_store: Any) -> Any:
        if claim_store is None:
            pytest.skip("not claimed: override the 'claim_store' fixture, or declare xcomsim_contract['claim_store']")
        return claim_store()

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

            counter = FirstFailure()

            @_EXAMPLES
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

    # ---------------------------------------------------------------- round trip
    @guarantee("round-trip-exact")
    def test_round_trip_is_exact(self, xcomsim_env: Any, contract_dag: Any) -> None:
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = self._task(contract_dag)
            keys = iter(range(10**9))

            counter = FirstFailure()

            @_EXAMPLES
            @given(value=serde_values())
            @counter.count
            def round_trip(value: Any) -> None:
                key = f"v{next(keys)}"
                with handle.active() as ti:
                    ti.xcom_push(key=key, value=value)
                    back = ti.xcom_pull(task_ids=ti.task_id, key=key)
                assert same(back, value), f"pushed {value!r}, pulled {back!r}"

            counter.run(round_trip)

    # ---------------------------------------------------------------- scoping
    def _scope_attempts(self, scoping: ScopeSetup | None, kind: str) -> list[ScopeAttempt]:
        if scoping is None:
            pytest.skip("not claimed: override the 'scoping' fixture, or declare xcomsim_contract['scoping']")
        from xcomsim.task_context import thread_local_task_state

        attempts = []
        tasks = list(scoping.pushes)
        with thread_local_task_state():
            handles = dict(zip(tasks, _start(scoping.dag, tasks)))
            for caller in tasks:  # every task tries every key; producers first, so pulls find values
                for key in scoping.keys:
                    raised = None
                    try:
                        with handles[caller].active() as ti:
                            ti.xcom_push(key=key, value=f"{caller}:{key}")
                    except Exception as exc:  # noqa: BLE001 - judged by the invariant
                        raised = exc
                    attempts.append(ScopeAttempt("push", caller, caller, key, key in scoping.pushes[caller],
                                                 _error(raised)))  # fmt: skip
            for caller in tasks if kind == "pull" else ():  # pulls need the pushes above, not the reverse
                for source in tasks:
                    if source == caller:
                        continue
                    allowed_keys = scoping.pulls.get(caller, {}).get(source, set())
                    for key in scoping.keys:
                        for how in ({}, {"map_indexes": -1}):  # all map indexes (get_all), and one (get_one)
                            raised = None
                            try:
                                with handles[caller].active() as ti:
                                    ti.xcom_pull(task_ids=source, key=key, **how)
                            except Exception as exc:  # noqa: BLE001 - judged by the invariant
                                raised = exc
                            attempts.append(ScopeAttempt("pull", caller, source, key, key in allowed_keys,
                                                         _error(raised)))  # fmt: skip
        return [a for a in attempts if a.kind == kind]

    @guarantee("push-scope")
    def test_tasks_push_only_declared_keys(self, xcomsim_env: Any, scoping: ScopeSetup | None) -> None:
        attempts = self._scope_attempts(scoping, "push")
        require("push-scope", Observation(scope_attempts=attempts))

    @guarantee("pull-scope")
    def test_tasks_pull_only_allowed_keys(self, xcomsim_env: Any, scoping: ScopeSetup | None) -> None:
        attempts = self._scope_attempts(scoping, "pull")
        require("pull-scope", Observation(scope_attempts=attempts))

    # ---------------------------------------------------------------- claims
    @guarantee("exactly-one-claim-winner", "no-lost-claim")
    def test_claim_races(self, xcomsim_env: Any, contract_dag: Any, claim_store: Any) -> None:
        store = self._claims(claim_store)
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = self._task(contract_dag)
            ids = itertools.count()

            counter = FirstFailure()

            @_EXAMPLES
            @given(workload=workloads(workers=(2, 3), keys=(), claim_ids=("c",), max_ops=3, leases=False),
                   data=st.data())  # fmt: skip
            @counter.count
            def race(workload: list[list[Any]], data: Any) -> None:
                claim_id = f"c{next(ids)}"  # a fresh claim per example
                workload = [[type(op)(claim_id) if isinstance(op, (Claim, Release)) else op for op in ops]
                            for ops in workload]  # fmt: skip
                history = run_workload(workload, dag=contract_dag, claim_store=store, handle=handle,
                                       chooser=hypothesis_chooser(data))  # fmt: skip
                note(history.describe())
                require(["exactly-one-claim-winner", "no-lost-claim"], Observation(history))

            counter.run(race)

    @guarantee("no-lost-claim")
    def test_released_or_expired_claims_can_be_claimed_again(
        self, xcomsim_env: Any, contract_dag: Any, claim_store: Any
    ) -> None:
        store = self._claims(claim_store)
        stories = {
            "released": [[Claim("released"), Release("released")], [Wait(0.0), Claim("released")]],
            "expired": [[Claim("expired", lease_seconds=0.2), Crash()], [Wait(0.6), Claim("expired")]],
        }
        for name, workload in stories.items():
            history = run_workload(workload, dag=contract_dag, claim_store=store)  # w0 runs first, then w1
            require("no-lost-claim", Observation(history), f"{name}:\n{history.describe()}")

    # ---------------------------------------------------------------- offload
    @guarantee("offload-threshold")
    def test_offload_at_and_above_threshold_only(self, xcomsim_env: Any, contract_dag: Any, offload: Any) -> None:
        threshold = self._offload_threshold(xcomsim_env, offload)
        from xcomsim.task_context import thread_local_task_state

        sizes = {f"size_{s}": s for s in (threshold - 1, threshold, threshold + 1, threshold * 8)}
        before = frozenset(store_objects(xcomsim_env))
        with thread_local_task_state():
            handle = self._task(contract_dag)
            with handle.active() as ti:
                for key, size in sizes.items():
                    ti.xcom_push(key=key, value=sized_string(size))
        obs = observe(xcomsim_env, handle.run_id, objects_before=before, threshold=threshold, pushed_sizes=sizes)
        require("offload-threshold", obs)

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
        assert not left, f"[purge-leaves-no-orphan] after XCom.delete the store still holds {sorted(left)}"

    @guarantee("purge-leaves-no-orphan")
    def test_reruns_leave_at_most_one_object_per_live_xcom(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any
    ) -> None:
        """A DAG-run clear deletes rows without calling purge; the task then runs again."""
        threshold = self._offload_threshold(xcomsim_env, offload)
        from sqlalchemy import text

        from xcomsim.task_context import thread_local_task_state

        reruns = 20
        before = frozenset(store_sizes(xcomsim_env))
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
        obs = observe(xcomsim_env, handle.run_id, objects_before=before, threshold=threshold)
        require("purge-leaves-no-orphan", obs, f"after {reruns} reruns")

    # ---------------------------------------------------------------- crashes and dangling references
    @guarantee("no-dangling-reference")
    def test_crash_at_any_io_of_a_push_leaves_no_dangling_reference(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any
    ) -> None:
        """The worker dies at each I/O point of an offloaded push in turn (e.g. between upload and row)."""
        threshold = self._offload_threshold(xcomsim_env, offload)
        from xcomsim.task_context import thread_local_task_state

        value = sized_string(threshold * 4)
        with thread_local_task_state():
            handle = self._task(contract_dag)
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
                require("no-dangling-reference", observe(xcomsim_env, handle.run_id),
                        f"the worker crashed at I/O #{index} of the push ({io}); its I/O: {io_calls}")  # fmt: skip

    # ---------------------------------------------------------------- the model
    @guarantee("push-once", "round-trip-exact", "no-dangling-reference", "exactly-one-claim-winner", "no-lost-claim")
    def test_backend_agrees_with_the_model(
        self, xcomsim_env: Any, contract_dag: Any, offload: Any, claim_store: Any
    ) -> None:
        """Push, pull, claim, release, faults and crashes in any order: the backend behaves like a dict."""
        threshold = self._offload_threshold(xcomsim_env, offload) if offload is not None else None
        from xcomsim.task_context import thread_local_task_state

        # Each example is up to 10 steps of real I/O, and shrinking one takes minutes: the first failing
        # sequence is reported as found (the targeted tests above give each guarantee's minimal story).
        budget = max(10, settings().max_examples // 5)
        run = settings(_EXAMPLES, max_examples=budget, stateful_step_count=10, report_multiple_bugs=False,
                       phases=[Phase.explicit, Phase.reuse, Phase.generate])  # fmt: skip
        with thread_local_task_state():
            handle = self._task(contract_dag)
            machine = XComMachine.bind(xcomsim_env, handle, threshold, claim_store() if claim_store else None)
            run_state_machine_as_test(machine, settings=run)

