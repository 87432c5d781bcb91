"""Faults at the I/O points: each kind does what it says, and the reference keeps its promises under them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from xcomsim.backend import XComPolicy
from xcomsim.checks import Observation, require
from xcomsim.conformance import observe, stored_values
from xcomsim.scheduler import hypothesis_chooser
from xcomsim.scheduler.faults import FaultPlan, WorkerCrash, fault_plans, injecting
from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, run_workload, workload_dag
from xcomsim.strategies import Pull, Push, sized_string

DAG = workload_dag("xcomsim_faults")
XComPolicy(pushes={WORKLOAD_TASK_ID: ["k"]}, retry_replaces=False).attach(DAG)
RACE = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_unknown_fault_kind_is_named():
    with pytest.raises(ValueError, match=r"unknown fault kind\(s\) \['s3-500'\]"):
        FaultPlan({0: "s3-500"})


def test_s3_faults_before_and_after_the_call(xcomsim_env):
    from botocore.exceptions import ClientError, ReadTimeoutError

    s3, bucket = xcomsim_env.s3, xcomsim_env.bucket
    with pytest.raises(ClientError, match="SlowDown"), injecting(FaultPlan({0: "s3-503"})):
        s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    with pytest.raises(ClientError, match="PreconditionFailed"), injecting(FaultPlan({0: "s3-412"})):
        s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)  # refused before reaching S3
    plan = FaultPlan({1: "s3-timeout"})
    with pytest.raises(ReadTimeoutError), injecting(plan):
        s3.put_object(Bucket=bucket, Key="first", Body=b"1")  # I/O #0: no fault
        s3.put_object(Bucket=bucket, Key="lost-reply", Body=b"1")  # I/O #1: lands, reply lost
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == {"first", "lost-reply"}
    assert [str(f) for f in plan.applied] == ["main I/O #1 (s3 PutObject lost-reply): s3-timeout"]


def test_redis_drops_and_a_crash(xcomsim_env):
    import redis

    client = xcomsim_env.redis
    with pytest.raises(redis.ConnectionError, match="before"), injecting(FaultPlan({0: "redis-drop"})):
        client.set("a", "1")
    with pytest.raises(redis.ConnectionError, match="it ran"), injecting(FaultPlan({0: "redis-drop-after"})):
        client.set("b", "1")
    assert client.get("a") is None and client.get("b") == b"1"
    with pytest.raises(WorkerCrash), injecting(FaultPlan({0: "crash"})):
        client.set("c", "1")
    assert client.get("c") is None
    s3_fault = FaultPlan({0: "s3-503"})
    with injecting(s3_fault):
        client.set("d", "1")  # an S3 fault does not land on Redis I/O
    assert client.get("d") == b"1" and s3_fault.applied == []


def test_a_crash_mid_workload_is_in_the_history_and_its_story(xcomsim_env):
    plan = FaultPlan({0: "crash"}, workers=frozenset({"w0"}))
    history = run_workload([[Push("k", sized_string(4000))], [Pull("k")]], dag=DAG, faults=plan)
    assert history.crashed == {"w0"}
    assert "faults injected:\nw0 I/O #0" in history.describe() and history.steps[0].error_type == "Crash"


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000})
def test_reference_keeps_push_once_and_references_under_faults(xcomsim_env):
    """Two racing pushers of an offloaded value, with S3 errors, lost replies and crashes drawn by Hypothesis."""
    value = {"w0": sized_string(3000), "w1": sized_string(3001)}
    run_workload([[Push("k", 0)]], dag=DAG)  # warm the clients: every example makes the same I/O

    @RACE
    @given(plan=fault_plans(kinds=("s3-503", "s3-412", "s3-timeout", "crash"), max_io=8), data=st.data())
    def race(plan, data):
        workload = [[Push("k", value["w0"])], [Push("k", value["w1"])]]
        history = run_workload(workload, dag=DAG, chooser=hypothesis_chooser(data), faults=plan)
        note(history.describe())
        obs = observe(xcomsim_env, history.run_id)
        stored = stored_values(xcomsim_env, DAG.dag_id, history.run_id)
        require(["push-once", "no-dangling-reference"], Observation(history, stored, rows=obs.rows,
                objects=obs.objects, bucket=obs.bucket), history.describe())  # fmt: skip

    race()


def test_a_dead_worker_does_no_more_io_and_crash_after_lands_first(xcomsim_env):
    client = xcomsim_env.redis
    plan = FaultPlan({0: "crash"})
    with injecting(plan):
        with pytest.raises(WorkerCrash, match="crashed before"):
            client.set("a", "1")
        with pytest.raises(WorkerCrash, match="it does no more I/O"):  # an except/finally cleanup of the backend
            client.delete("b")
    with pytest.raises(WorkerCrash, match="crashed after redis SET 'c' took effect"), injecting(FaultPlan({0: "crash-after"})):
        client.set("c", "1")
    assert client.get("a") is None and client.get("c") == b"1"


def test_an_outage_lasts_for_every_later_call_to_that_store(xcomsim_env):
    import redis
    from botocore.exceptions import ClientError

    s3, bucket = xcomsim_env.s3, xcomsim_env.bucket
    plan = FaultPlan({1: "s3-outage"})
    with injecting(plan):
        s3.put_object(Bucket=bucket, Key="before", Body=b"1")  # I/O #0: up
        for key in ("during", "cleanup"):  # #1 goes down, and so does every later S3 call
            with pytest.raises(ClientError, match="SlowDown"):
                s3.put_object(Bucket=bucket, Key=key, Body=b"1")
        xcomsim_env.redis.set("other-store", "1")  # another store is up
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == {"before"}
    assert [f.kind for f in plan.applied] == ["s3-outage"] and xcomsim_env.redis.get("other-store") == b"1"
    with injecting(FaultPlan({0: "redis-outage"})):
        for key in ("x", "y"):
            with pytest.raises(redis.ConnectionError):
                xcomsim_env.redis.set(key, "1")


def test_a_lost_reply_to_the_row_write_keeps_the_committed_push(xcomsim_env, caplog):
    """The reply is lost after the row committed: the reference backend reads the row back and keeps
    the push (no error, value stored), rather than undoing a value that landed."""
    dry = FaultPlan({})
    run_workload([[Push("k", 0)]], dag=DAG, faults=dry)  # the push's I/O: its guard, then the row
    write = dry.seen["w0"].index("api SetXCom")
    plan = FaultPlan({write: "api-lost-reply"})
    history = run_workload([[Push("k", 7)]], dag=DAG, faults=plan)
    (step,) = history.steps
    assert step.error is None and step.error_type is None
    assert "lost after the row committed" in caplog.text
    assert stored_values(xcomsim_env, DAG.dag_id, history.run_id) == {"k": 7}
    assert [str(f) for f in plan.applied] == [f"w0 I/O #{write} (api SetXCom): api-lost-reply"]
