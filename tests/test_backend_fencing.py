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
