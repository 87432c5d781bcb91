"""Tries and time as a deployment has them: fencing, claims under skewed clocks, and the retry rule.

On a deployment a task instance's try can outlive Airflow's view of it (a zombie
whose heartbeat timed out goes on pushing beside its retry), hosts' clocks
disagree by minutes, and an upload can take longer than any lease. Three
guarantees are judged here, each under faults the race scheduler draws:

* ``fenced-tries``: a zombie try and its retry push the same key in every
  interleaving, with the zombie's host clock 10 minutes off or one of its calls
  slower than a lease: an earlier try's late write never replaces what the later
  try pushed (nor what it read back). Judged when push-once is claimed.
* ``exactly-one-claim-winner`` under skew: two claimants whose clocks are 10
  minutes apart, either way round: while one holds a fresh lease the other must
  not win it.
* ``retry-can-push`` as a property: a fault drawn at any I/O of a try's push
  (a crash before or after the call, a lost reply, a store error or outage),
  then the next try pushes the key again. When the backend declares the retry
  rule (``xcomsim_contract["retry_replaces_failed_try"] = True``) the next try
  must succeed even when the crashed try's value was committed (a task killed
  after its push: on a Celery deployment, otherwise, no retry can ever succeed).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from xcomsim.checks import Observation, require
from xcomsim.conformance.examples import FirstFailure, examples, guarantee, one_task
from xcomsim.conformance.push_once import require_claimed
from xcomsim.conformance.stores import stored_values
from xcomsim.scheduler import first_runnable, hypothesis_chooser
from xcomsim.scheduler.faults import SKEW_SECONDS, FaultPlan, fits
from xcomsim.scheduler.interception import matters
from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, run_workload, workload_dag
from xcomsim.strategies import Claim, Pull, Push, Retry, Takeover, sized_string

_fresh = itertools.count()
_RETRY_FAULTS = ("crash", "crash-after", "api-lost-reply", "s3-503", "s3-outage", "redis-drop", "redis-outage")


def _strict_dag(contract: Any, keys: list[str]) -> Any:
    """A workload DAG under the backend's strictest push-once mode (an XComPolicy without retry_replaces)."""
    dag = workload_dag(f"xcomsim_contract_fenced_{next(_fresh)}")
    if getattr(contract, "scoping", None) == "xcomsim-policy":
        from xcomsim.backend import XComPolicy

        XComPolicy(pushes={WORKLOAD_TASK_ID: keys}, retry_replaces=False).attach(dag)
    return dag


def _value(offload: Any, offloaded: Any, tag: str) -> Any:
    """A value the backend offloads if it offloads at all: four times its threshold (64 characters at least),
    or a fresh value of what discovery saw it offload (a type, an item count, a depth)."""
    if offload is not None and offload[1] is None:
        return offloaded(next(_fresh))
    size = max(64, int(offload[1]) * 4) if offload is not None else 64
    return tag + sized_string(size - len(tag))


class FencingTests:
    @guarantee("fenced-tries")
    def test_an_earlier_try_never_replaces_a_later_tries_value(self, xcomsim_env: Any, contract: Any, offload: Any,
                                                               offloaded: Any, push_once: bool | None) -> None:  # fmt: skip
        """A zombie try and its retry push one key in any interleaving, the zombie's clock off or its I/O slow."""
        from xcomsim.task_context import thread_local_task_state

        if offload is not None:
            xcomsim_env.set_config(offload[0])
        keys = [f"f{n}" for n in range(1000)]
        dag = _strict_dag(contract, keys)
        with thread_local_task_state():
            require_claimed(push_once, one_task(dag))
            names = iter(keys)
            counter = FirstFailure()

            @examples()
            @given(data=st.data(), skew=st.sampled_from([0.0, -SKEW_SECONDS, SKEW_SECONDS]),
                   slow=st.none() | st.integers(0, 5))  # fmt: skip
            @counter.count
            def race(data: Any, skew: float, slow: int | None) -> None:
                from xcomsim.task_context import start_task_instances

                (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
                key = next(names)
                plan = FaultPlan({} if slow is None else {slow: "slow-io"}, workers=frozenset({"w0"}),
                                 skews={"w0": skew})  # fmt: skip
                workload = [[Push(key, _value(offload, offloaded, "zombie:"))],
                            [Takeover(), Push(key, _value(offload, offloaded, "retry:")), Pull(key)]]  # fmt: skip
                history = run_workload(workload, dag=dag, handle=handle, chooser=hypothesis_chooser(data),
                                       faults=plan)  # fmt: skip
                note(history.describe())
                stored = stored_values(xcomsim_env, dag.dag_id, handle.run_id)
                require("fenced-tries", Observation(history, {key: stored[key]} if key in stored else {}),
                        history.describe())  # fmt: skip

            counter.run(race)

    @guarantee("exactly-one-claim-winner")
    def test_claims_hold_whatever_the_claimants_clocks_say(self, xcomsim_env: Any, contract_dag: Any,
                                                           claim_store: Any) -> None:  # fmt: skip
        """One claimant's clock 10 minutes slow, the other's 10 minutes fast, either way round: a fresh
        5-minute lease is never won by the other one."""
        if claim_store is None:
            pytest.skip("not claimed: override the 'claim_store' fixture, or declare xcomsim_contract['claim_store']")
        from xcomsim.task_context import thread_local_task_state

        store = claim_store()
        with thread_local_task_state():
            handle = one_task(contract_dag)
            for first, second in ((-SKEW_SECONDS, SKEW_SECONDS), (SKEW_SECONDS, -SKEW_SECONDS)):
                claim_id = f"skewed{next(_fresh)}"
                plan = FaultPlan({}, skews={"w0": first, "w1": second})
                workload = [[Claim(claim_id, lease_seconds=300.0)], [Claim(claim_id, lease_seconds=300.0)]]
                history = run_workload(workload, dag=contract_dag, claim_store=store, handle=handle, faults=plan,
                                       chooser=first_runnable)  # fmt: skip
                require("exactly-one-claim-winner", Observation(history), history.describe())

    @guarantee("retry-can-push")
    def test_a_retry_can_push_after_a_fault_at_any_point_of_a_push(self, xcomsim_env: Any, contract: Any,
                                                                    offload: Any, offloaded: Any) -> None:  # fmt: skip
        """A fault drawn at any I/O of try 1's push; the next try pushes the key again."""
        from xcomsim.task_context import start_task_instances, thread_local_task_state

        if offload is not None:
            xcomsim_env.set_config(offload[0])
        lease = 0.0
        if contract.retry_lease is not None:
            xcomsim_env.set_config(contract.retry_lease[0])
            lease = contract.retry_lease[1]
        keys = [f"r{n}" for n in range(1000)] + ["dry"]
        dag = _strict_dag(contract, keys)
        with thread_local_task_state():
            (probe,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
            dry = FaultPlan({})
            run_workload([[Push("dry", _value(offload, offloaded, "dry:"))]], dag=dag, handle=probe, faults=dry)
            io_calls = [io for io in dry.seen.get("w0", []) if matters(io)]
            names = iter(keys)
            counter = FirstFailure()

            @examples()
            @given(index=st.integers(0, max(0, len(io_calls) - 1)), kind=st.sampled_from(_RETRY_FAULTS))
            @counter.count
            def crash_point(index: int, kind: str) -> None:
                from xcomsim.strategies import Wait

                if not fits(kind, io_calls[index]):
                    return
                (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
                key = next(names)
                plan = FaultPlan({index: kind}, workers=frozenset({"w0"}))
                retry = [Wait(lease)] * bool(lease) + [Retry(), Push(key, _value(offload, offloaded, "try 2:"))]
                history = run_workload([[Push(key, _value(offload, offloaded, "try 1:"))], retry], dag=dag, handle=handle,
                                       faults=plan, chooser=first_runnable)  # fmt: skip
                stored = stored_values(xcomsim_env, dag.dag_id, handle.run_id)
                story = f"{kind} at I/O #{index} ({io_calls[index]}) of try 1's push\n{history.describe()}"
                note(story)
                require("retry-can-push", Observation(history, {key: stored[key]} if key in stored else {},
                                                      retry_replaces_failed_try=contract.retry_replaces_failed_try),
                        story)  # fmt: skip

            counter.run(crash_point)
