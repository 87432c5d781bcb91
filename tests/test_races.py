"""Races under the deterministic scheduler: the reference keeps its guarantees, the mutants are caught."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from xcomsim.backend import XComPolicy
from xcomsim.backend.claims import RedisClaimStore, SqlClaimStore
from xcomsim.checks import Observation, violations
from xcomsim.conformance import stored_values
from xcomsim.mutants.claims import CheckThenActClaimStore, RedisGetThenSetClaimStore
from xcomsim.scheduler import hypothesis_chooser
from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, ManualClock, run_workload, workload_dag
from xcomsim.strategies import Claim, Push, workloads

# The budget and randomness come from the active --xcomsim-profile (ci: 100 derandomised examples).
RACE = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Catching a mutant needs only the first failing example; shrinking it to a minimal story
# is shown once (the claim races below) and costs hundreds of examples elsewhere.
DETECT_ONLY = settings(RACE, phases=[Phase.explicit, Phase.reuse, Phase.generate])
DAG = workload_dag()
XComPolicy(pushes={WORKLOAD_TASK_ID: ["k", "j"]}).attach(DAG)

def _claim_workloads(leases):
    return workloads(workers=(2, 3), keys=(), claim_ids=("c",), max_ops=3, leases=leases).filter(
        lambda w: sum(isinstance(op, Claim) for ops in w for op in ops) >= 2
    )


# Redis expires leases on server time, not on a ManualClock: its races run without leases.
LEASES = {"sql": True, "redis": False, "sql-check-then-act": True, "redis-get-then-set": False}
push_workloads = st.lists(
    st.lists(st.builds(Push, st.just("k"), st.integers(0, 99)), min_size=1, max_size=2), min_size=2, max_size=3
)

CLOCK = ManualClock()  # the SQL stores' leases run on it; Wait operations move it
STORES = {
    "sql": lambda env: SqlClaimStore(env.engine, clock=CLOCK),
    "redis": lambda env: RedisClaimStore(env.redis),
    "sql-check-then-act": lambda env: CheckThenActClaimStore(env.engine, clock=CLOCK),
    "redis-get-then-set": lambda env: RedisGetThenSetClaimStore(env.redis),
}


def _claim_race(env, store_name):
    found: dict[str, object] = {"examples": 0, "first_failure": None}
    store = STORES[store_name](env)
    run_workload([[Claim("c")]], dag=DAG, claim_store=store)  # warm caches: same I/O every example

    @RACE
    @given(workload=_claim_workloads(LEASES[store_name]), data=st.data())
    def race(workload, data):
        found["examples"] += 1
        env.redis.flushall()  # each example gets a new DAG run; claims need a clean slate
        if hasattr(store, "clear"):
            store.clear()
        history = run_workload(workload, dag=DAG, claim_store=store, chooser=hypothesis_chooser(data),
                               clock=CLOCK if LEASES[store_name] else None)
        note(history.describe())
        problems = violations("exactly-one-claim-winner", Observation(history))
        if store_name in ("sql", "redis"):  # the mutants may also lose claims; judged by the winner check here
            problems += violations("no-lost-claim", Observation(history))
        if problems and found["first_failure"] is None:
            found["first_failure"] = found["examples"]
        assert not problems, problems

    return race, found


@pytest.mark.parametrize("store", ["sql", "redis"])
def test_reference_claim_stores_keep_exactly_one_winner(xcomsim_env, store):
    race, _ = _claim_race(xcomsim_env, store)
    race()


@pytest.mark.parametrize("store", ["sql-check-then-act", "redis-get-then-set"])
def test_check_then_act_claim_stores_are_caught(xcomsim_env, store):
    race, found = _claim_race(xcomsim_env, store)
    with pytest.raises(AssertionError, match="won claim 'c' .* while w\\d held it"):
        race()
    assert found["first_failure"] <= 100  # found within the default budget; shrinking comes after


def _push_race(env, profile=RACE):
    # Warm the backend's caches (clients, connections) so every example makes the same I/O.
    run_workload([[Push("k", 0)], [Push("k", 1)]], dag=DAG)

    @profile
    @given(workload=push_workloads, data=st.data())
    def race(workload, data):
        history = run_workload(workload, dag=DAG, chooser=hypothesis_chooser(data))  # a new DAG run each time
        note(history.describe())
        problems = violations("push-once", Observation(history, stored_values(env, DAG.dag_id, history.run_id)))
        assert not problems, problems

    return race


def test_reference_backend_keeps_push_once_under_races(xcomsim_env):
    _push_race(xcomsim_env)()


@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.ReadThenWriteGuardXCom")
def test_read_then_write_guard_is_caught(xcomsim_env):
    with pytest.raises(AssertionError, match="succeeded after w\\d had pushed it"):
        _push_race(xcomsim_env, DETECT_ONLY)()


@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.OverwriteAllowedXCom")
def test_overwriting_backend_is_caught(xcomsim_env):
    with pytest.raises(AssertionError, match="succeeded after w\\d had pushed it"):
        _push_race(xcomsim_env, DETECT_ONLY)()




@pytest.mark.parametrize("store", ["sql", "redis"])
def test_stress_free_threads_each_claim_has_one_winner(xcomsim_env, store):
    from xcomsim.scheduler.workload import stress_workload

    claims = STORES[store](xcomsim_env)
    claim_ids = [f"c{i}" for i in range(10)]
    workload = [[Claim(c) for c in claim_ids[n:] + claim_ids[:n]] for n in range(4)]  # 4 workers x 10 claims
    history = stress_workload(workload, dag=DAG, claim_store=claims, timeout=120)

    wins = {c: [s.worker for s in history.steps if s.op.claim_id == c and s.result] for c in claim_ids}
    assert all(len(winners) == 1 for winners in wins.values()), wins
    assert len(history.steps) == 40 and not any(s.error for s in history.steps)


@pytest.mark.xcomsim(backend="user_style_backends.S3HookPerPushXCom")
def test_backend_building_an_s3hook_per_push_races_to_a_verdict(xcomsim_env):
    from xcomsim.compat.names import home

    if not home("serialize")[1].startswith("airflow.sdk."):
        pytest.skip("the backend is written against the task SDK's airflow.sdk.serde (Airflow 3.2+)")
    """Its hooks fetch the connection and mask secrets under S3Hook's cached_property lock (Python 3.11):
    those messages are not switch points, so the race ends, and push-once (a conditional put) is judged."""
    xcomsim_env.set_config({"s3_xcom.bucket": xcomsim_env.bucket})
    dag = workload_dag("xcomsim_s3hook_per_push")
    run_workload([[Push("k", 0)], [Push("k", 1)]], dag=dag)  # warm: every example makes the same I/O
    switches = []

    @settings(RACE, max_examples=min(RACE.max_examples, 30))
    @given(values=st.lists(st.integers(0, 99), min_size=2, max_size=2), data=st.data())
    def race(values, data):
        history = run_workload([[Push("k", v)] for v in values], dag=dag, chooser=hypothesis_chooser(data))
        note(history.describe())
        switches.append(history.timeline.preemptions)
        stored = stored_values(xcomsim_env, dag.dag_id, history.run_id)
        problems = violations("push-once", Observation(history, stored))
        assert not problems, problems

    race()
    assert max(switches) >= 1  # the workers were really interleaved, not run one after the other
