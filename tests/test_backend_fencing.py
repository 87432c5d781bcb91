"""Time, tries and gc as a deployment has them: each attack through a real DAG run or a real task instance, on the
mutant that keeps the hole (``xcomsim.mutants.fencing``: it must lose) and on ExclusiveXCom (it must not)."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from xcomsim.backend import XComPolicy, codec
from xcomsim.mutants.fencing import FENCING

REFERENCE = "xcomsim.backend.ExclusiveXCom"
OFFLOAD = {"xcomsim.xcom_objectstorage_threshold": 1000}
SECRET = "s" * 5000  # offloaded


def against(mutant: str, **marker):
    """Parametrise over (the mutant, the reference); the test gets ``hole`` True for the mutant."""
    assert f"xcomsim.mutants.fencing.{mutant}" in FENCING
    return pytest.mark.parametrize(
        "hole",
        [
            pytest.param(True, marks=pytest.mark.xcomsim(backend=f"xcomsim.mutants.fencing.{mutant}", **marker),
                         id=mutant),
            pytest.param(False, marks=pytest.mark.xcomsim(backend=REFERENCE, **marker), id="ExclusiveXCom"),
        ],
    )  # fmt: skip


# ------------------------------------------------------------------ gc against a run deleted and triggered again
SEEN: list[str] = []
STALE_RUNS: list[set] = []  # what gc's first look at the runs saw: before the run was triggered again


def _push_sweep_push(ti, **_):
    from xcomsim.backend.config import load
    from xcomsim.env.xcom_backend import load_backend

    ti.xcom_push(key="report", value="first")  # takes the guard the deleted run left (another run: at once)
    backend = load_backend(SEEN[0])
    backend.sweep(load().path, SEEN[1], dry_run=False, grace_seconds=0)  # gc, listed before this run existed
    try:
        ti.xcom_push(key="report", value="second")
        SEEN.append("second push accepted")
    except Exception as exc:
        SEEN.append(type(exc).__name__)


with DAG("fencing_gc_retrigger", start_date=datetime(2024, 1, 1), schedule=None) as gc_retrigger:
    PythonOperator(task_id="owner", python_callable=_push_sweep_push)

XComPolicy(pushes={"owner": ["report"]}).attach(gc_retrigger)


@against("UncheckedSweepXCom", config=OFFLOAD)
def test_gc_racing_a_run_deleted_and_triggered_again_keeps_its_guard(run_dag, xcomsim_env, monkeypatch, hole):
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from xcomsim.backend import gc

    monkeypatch.setattr(DagRun, "generate_run_id", staticmethod(lambda **_: "nightly"))  # the REST API's dag_run_id
    backend = f"{xcomsim_env.backend.__module__}.{xcomsim_env.backend.__qualname__}"
    SEEN[:] = [backend, xcomsim_env.engine]
    first = run_dag(gc_retrigger)
    assert first.task("owner").state == "success"
    session = settings.Session()
    try:
        for dag_run in session.query(DagRun).filter(DagRun.dag_id == "fencing_gc_retrigger"):
            session.delete(dag_run)  # rows go, the store keeps the guard
        session.commit()
    finally:
        session.close()
    stale = gc._live_runs(xcomsim_env.engine)
    real, calls = gc._live_runs, []

    def live_runs(engine):  # gc's first look was before the run was triggered again; later looks are live
        calls.append(1)
        return stale if len(calls) == 1 else real(engine)

    monkeypatch.setattr(gc, "_live_runs", live_runs)
    SEEN[:] = [backend, xcomsim_env.engine]
    again = run_dag(gc_retrigger)

    assert again.run_id == first.run_id
    assert again.xcom("owner", "report") == ("second" if hole else "first")
    assert SEEN[2:] == (["second push accepted"] if hole else ["XComOverwriteError"])


@against("UncheckedSweepXCom", config={**OFFLOAD, "xcomsim.gc_grace_seconds": 0})
def test_gc_deletes_only_names_of_its_own_scheme(xcomsim_env, hole):
    from xcomsim.backend.config import load

    foreign = ("xcom/README.txt", "xcom/values/ledger.csv", "xcom/guards/notes.md")
    for key in foreign:
        xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key=key, Body=b"a user's file")
    orphan = "xcom/" + codec.object_name("gone", "r", "t", -1, "k", attempt=1)
    xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key=orphan, Body=b"an orphan")

    xcomsim_env.backend.sweep(load().path, xcomsim_env.engine, dry_run=False, grace_seconds=0)

    left = {o["Key"] for o in xcomsim_env.s3.list_objects_v2(Bucket=xcomsim_env.bucket).get("Contents", [])}
    assert orphan not in left
    assert (left & set(foreign)) == ({"xcom/README.txt"} if hole else set(foreign))  # the old one listed values/, guards/


# ------------------------------------------------------------------ a zombie try and its retry, on real task instances
def _zombie_and_retry(dag, key: str, *, zombie_clock: float = 0.0, upload_takes: float = 0.0):
    """Try 1 (soon a zombie) takes its guard and uploads; Airflow ends it and starts try 2, which pushes and
    reads back; then the zombie writes its row. Returns (what try 2 read, what the zombie's push did, stored)."""
    from airflow.sdk.execution_time.xcom import XCom

    from xcomsim.env.clock import WORLD
    from xcomsim.task_context import start_task_instances, thread_local_task_state

    with thread_local_task_state(), WORLD.running():
        (handle,) = start_task_instances(dag, [("worker", -1)])
        zombie = handle.snapshot()
        with zombie.active() as ti, WORLD.skewed(zombie_clock):
            message, push = XCom._prepare_push(key, "zombie:" + SECRET, ti.dag_id, ti.task_id, ti.run_id, -1,
                                               False, None)  # fmt: skip
            WORLD.advance(upload_takes)  # the upload was slow: time passed for everyone
        handle.finish("failed")  # Airflow declares try 1 over (its heartbeat timed out) and retries it
        handle.start()
        with handle.active() as ti:
            ti.xcom_push(key=key, value="retry:" + SECRET)
            read = ti.xcom_pull(task_ids=ti.task_id, key=key)
        with zombie.active(), WORLD.skewed(zombie_clock):
            try:
                XCom._complete_push(message, push, zombie.comms.send)
                outcome = "row written"
            except Exception as exc:
                outcome = type(exc).__name__
        with handle.active() as ti:
            try:
                stored = ti.xcom_pull(task_ids=ti.task_id, key=key)
            except Exception as exc:
                stored = f"{type(exc).__name__}: {exc}"
    return read, outcome, stored


def _tries_dag(dag_id: str, retry_replaces: bool = False):
    from xcomsim.scheduler.workload import workload_dag

    dag = workload_dag(dag_id)
    XComPolicy(pushes={"worker": ["k"]}, retry_replaces=retry_replaces).attach(dag)
    return dag


@against("WallClockGuardXCom", config=OFFLOAD)
def test_an_upload_slower_than_the_lease_is_undone_not_stored(xcomsim_env, hole):
    """The zombie's upload took 400 s (the old lease: 300, counted after the upload): its row must not land."""
    read, outcome, stored = _zombie_and_retry(_tries_dag("fencing_slow_upload"), "k", upload_takes=400)

    assert read == "retry:" + SECRET
    if hole:  # the zombie's row landed over the retry's committed value (whose object it also shares)
        assert outcome == "row written" and stored != "retry:" + SECRET
    else:
        assert (outcome, stored) == ("XComFencedError", "retry:" + SECRET)


@against("WallClockGuardXCom", config=OFFLOAD)
def test_a_try_on_a_host_ten_minutes_behind_is_not_overwritten_by_nor_overwrites_its_retry(xcomsim_env, hole):
    """The zombie's host clock is 10 minutes slow: its guard looked 10 minutes old to the retry at once."""
    read, outcome, stored = _zombie_and_retry(_tries_dag("fencing_skewed"), "k", zombie_clock=-600)

    assert read == "retry:" + SECRET
    if hole:
        assert outcome == "row written" and stored != "retry:" + SECRET
    else:
        assert (outcome, stored) == ("XComFencedError", "retry:" + SECRET)


@against("WallClockGuardXCom", config=OFFLOAD)
def test_with_retry_replaces_a_try_in_flight_and_its_retry_never_share_an_object(xcomsim_env, hole):
    """retry_replaces: the retry replaces the zombie's value; one object name for both left a row naming bytes
    that were overwritten."""
    read, outcome, stored = _zombie_and_retry(_tries_dag("fencing_shared_name", retry_replaces=True), "k")

    assert read == "retry:" + SECRET
    if hole:
        assert "no longer holds the bytes" in stored  # the zombie's row names the object the retry rewrote
    else:
        assert (outcome, stored) == ("XComFencedError", "retry:" + SECRET)


# ------------------------------------------------------------------ crash, then the retry after retry_delay


def _push_report(ti, **_):
    ti.xcom_push(key="report", value=SECRET)


with DAG("fencing_retry_delay", start_date=datetime(2024, 1, 1), schedule=None) as retry_delay_dag:
    PythonOperator(task_id="owner", python_callable=_push_report, retries=1)  # Airflow's retry_delay: 300 s

XComPolicy(pushes={"owner": ["report"]}).attach(retry_delay_dag)


@pytest.mark.xcomsim(backend="xcomsim.mutants.fencing.WallClockGuardXCom", config=OFFLOAD)
def test_run_dag_retries_after_retry_delay_as_airflow_does(run_dag, outage_during_first_push):
    """A guard left without a row, and the old wall-clock guard (300 s lease): Airflow's retry comes after
    retry_delay (300 s), so a deployment's retry takes the guard over; run_dag's does too (it retried at once)."""
    from airflow import settings
    from airflow.models.taskinstancehistory import TaskInstanceHistory

    result = run_dag(retry_delay_dag)

    assert outage_during_first_push == ["put", "delete"]
    assert result.succeeded, result.describe()
    assert result.task("owner").try_number == 2
    assert result.xcom("owner", "report") == SECRET
    assert result.skipped_seconds >= 290  # 300 s after try 1 ended, less the real time the run took
    session = settings.Session()
    try:
        first = session.query(TaskInstanceHistory).filter_by(dag_id="fencing_retry_delay", try_number=1).one()
        from airflow.models.taskinstance import TaskInstance

        second = session.query(TaskInstance).filter_by(dag_id="fencing_retry_delay", run_id=result.run_id).one()
        assert (second.start_date - first.end_date).total_seconds() >= 300
    finally:
        session.close()


# ------------------------------------------------------------------ push-once against retries: killed after the push
@against("StrictAcrossTriesXCom")
def test_a_task_killed_after_its_push_committed_succeeds_on_retry(xcomsim_env, hole):
    """A real task process pushes, then is SIGKILLed (try 1); its retry, a new process, pushes again."""
    result = xcomsim_env.run_dag("killed_after_push", worker_process=True)

    assert result.task("pusher").try_number == 2
    if hole:
        assert result.error("pusher").exc_type == "XComOverwriteError"
        assert result.xcom("pusher", "report") == "computed by try 1"
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("pusher", "report") == "computed by try 2"


# ------------------------------------------------------------------ SQL claims under skewed claimants' clocks
@against("WorkerClockClaimsXCom")
def test_sql_claims_are_judged_by_the_databases_clock_not_the_claimants(xcomsim_env, hole):
    """Claimants 10 minutes slow and 10 minutes fast, either way round, on real task instances."""
    from xcomsim.checks import Observation, violations
    from xcomsim.conformance.capabilities import declared
    from xcomsim.scheduler import first_runnable
    from xcomsim.scheduler.faults import FaultPlan
    from xcomsim.scheduler.workload import run_workload, workload_dag
    from xcomsim.strategies import Claim

    store = declared(xcomsim_env.backend).claim_store()
    dag = workload_dag("fencing_claims")
    found = []
    for first, second in ((-600.0, 600.0), (600.0, -600.0)):
        claim = f"partition-{first:+.0f}"
        workload = [[Claim(claim, lease_seconds=300.0)], [Claim(claim, lease_seconds=300.0)]]
        history = run_workload(workload, dag=dag, claim_store=store, faults=FaultPlan({}, skews={"w0": first, "w1": second}),
                               chooser=first_runnable)  # fmt: skip
        found += violations("exactly-one-claim-winner", Observation(history))
    assert bool(found) is hole, found
