"""Storing a DAG into a fresh clone: once per session for the same DAG, file and configuration, the
state after it copied into later fresh clones; never over anything a test wrote."""

from __future__ import annotations

import os
import textwrap
from datetime import datetime

import pytest
from sqlalchemy import select, text

from airflow.sdk import DAG, task
from xcomsim.errors import DagSerializationError
from xcomsim.runner import store


def _probe(dag_id: str) -> DAG:
    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None, tags=["probe"]) as dag:

        @task
        def one():
            return 1

        one()
    return dag


@pytest.fixture
def stores(monkeypatch, xcomsim_simulation) -> list[str]:
    """The DAG ids of every real store (Airflow's DAG-processor write) from now on."""
    if xcomsim_simulation.settings.db_url:
        pytest.skip("state copies are for in-memory clones; a server DB stores every time")
    from airflow.dag_processing import collection

    calls: list[str] = []
    real = collection.update_dag_parsing_results_in_db

    def counted(bundle, version, dags, *args, **kwargs):
        calls.extend(d.dag_id for d in dags)
        return real(bundle, version, dags, *args, **kwargs)

    monkeypatch.setattr(collection, "update_dag_parsing_results_in_db", counted)
    return calls


_STORED_COLUMNS = {
    "dag": "dag_id, fileloc, relative_fileloc, bundle_name, is_paused, is_stale, max_active_tasks, timetable_summary",
    "serialized_dag": "dag_id, dag_hash",
    "dag_code": "dag_id, fileloc, source_code",
    "dag_version": "dag_id, version_number, bundle_name",
    "dag_tag": "dag_id, name",
}


def _stored(env) -> dict[str, list[tuple]]:
    with env.engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(text(f"SELECT {c} FROM {t}")))) for t, c in _STORED_COLUMNS.items()}


def test_a_later_fresh_clone_gets_the_same_stored_rows_without_storing_again(xcomsim_simulation, stores, monkeypatch):
    dag = _probe("stored_once")
    seen = []
    for _ in range(2):
        with xcomsim_simulation.environment() as env:
            assert env.run_dag(dag).succeeded
            seen.append(_stored(env))
    assert stores == ["stored_once"]
    # What a real store writes, in a third clone that may not copy (another key).
    monkeypatch.setattr(store, "_stored_key", lambda lazy, hashes: os.urandom(8).hex())
    with xcomsim_simulation.environment() as env:
        assert env.run_dag(dag).succeeded
        assert _stored(env) == seen[1] == seen[0]
    assert stores == ["stored_once", "stored_once"]
    assert seen[1]["dag"] and seen[1]["serialized_dag"] and seen[1]["dag_code"]


def test_a_clone_a_test_has_written_to_is_stored_into_and_keeps_what_the_test_wrote(xcomsim_simulation, stores):
    from airflow.models.variable import Variable

    dag = _probe("stored_after_a_write")
    with xcomsim_simulation.environment() as env:
        assert env.run_dag(dag).succeeded  # its state is kept
    with xcomsim_simulation.environment() as env:
        Variable.set("mine", "kept")
        assert env.run_dag(dag).succeeded
        assert Variable.get("mine") == "kept"
    assert stores == ["stored_after_a_write", "stored_after_a_write"]


def test_two_runs_in_one_test_keep_the_first_run(xcomsim_simulation, stores):
    from airflow.models.dagrun import DagRun

    dag = _probe("stored_two_runs")
    with xcomsim_simulation.environment() as env:
        assert env.run_dag(dag).succeeded
        assert env.run_dag(dag).succeeded  # the DB holds the first run: it is stored into, not replaced
        with env.engine.connect() as conn:
            assert len(conn.execute(select(DagRun.__table__.c.id)).all()) == 2
    assert stores == ["stored_two_runs"]  # the second run found the same DAG stored, and stored nothing


def test_a_dag_a_test_changed_in_the_db_is_stored_again(xcomsim_simulation, stores):
    dag = _probe("stored_changed")
    with xcomsim_simulation.environment() as env:
        assert env.run_dag(dag).succeeded
        with env.engine.begin() as conn:
            conn.execute(text("UPDATE dag SET is_stale = 1 WHERE dag_id = 'stored_changed'"))
        assert env.run_dag(dag).succeeded
        assert _stored(env)["dag"][0][5] in (0, False)  # active again
        with env.engine.begin() as conn:
            conn.execute(text("UPDATE serialized_dag SET dag_hash = 'edited' WHERE dag_id = 'stored_changed'"))
        assert env.run_dag(dag).succeeded
    assert stores == ["stored_changed"] * 3


def test_a_store_that_failed_is_not_kept(xcomsim_simulation, stores, monkeypatch):
    from airflow.dag_processing import collection

    dag = _probe("stored_failed")
    monkeypatch.setattr(collection, "update_dag_parsing_results_in_db", lambda *a, **k: None)  # writes nothing
    with xcomsim_simulation.environment() as env, pytest.raises(DagSerializationError):
        env.run_dag(dag)
    monkeypatch.undo()
    with xcomsim_simulation.environment() as env:
        assert env.run_dag(dag).succeeded  # stored for real, not a copy of the empty state
        assert _stored(env)["serialized_dag"][0][0] == "stored_failed"


def _key(dag: DAG) -> str:
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    lazy = LazyDeserializedDAG.from_dag(dag)
    return store._stored_key([lazy], {lazy.dag_id: lazy.hash})


def test_the_key_changes_with_the_dag_its_file_and_the_configuration(tmp_path, monkeypatch):
    path = tmp_path / "keyed.py"
    path.write_text("# a DAG file\n")
    dag = _probe("keyed")
    dag.fileloc = str(path)
    first = _key(dag)
    assert _key(dag) == first
    assert _key(_probe("keyed_other")) != first

    path.write_text("# a DAG file, edited\n")
    assert _key(dag) != first
    edited = _key(dag)

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    assert _key(dag) != edited
    monkeypatch.delenv("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "left by a task")  # a task's context, not configuration
    assert _key(dag) == edited

    with DAG("keyed", start_date=datetime(2024, 1, 1), schedule=None, tags=["other"]) as changed:
        task(lambda: 1, task_id="one")()
    changed.fileloc = str(path)
    assert _key(changed) != edited


def test_a_dag_file_edited_between_tests_is_stored_again(xcomsim_simulation, stores, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "edited_between.py"
    source = textwrap.dedent(
        """
        from datetime import datetime
        from airflow.sdk import DAG, task
        with DAG("stored_edited", start_date=datetime(2024, 1, 1), schedule=None) as dag:
            task(lambda: {n}, task_id="one")()
        """
    )
    codes = []
    for n in (1, 2):
        path.write_text(source.format(n=n))
        dag = DagBag(dag_folder=str(path), safe_mode=False, load_op_links=False).dags["stored_edited"]
        with xcomsim_simulation.environment() as env:
            assert env.run_dag(dag).succeeded
            codes.append(_stored(env)["dag_code"][0][2])
    assert stores == ["stored_edited", "stored_edited"]
    assert "lambda: 1" in codes[0] and "lambda: 2" in codes[1]


def test_a_copy_refused_by_an_open_transaction_leaves_the_clone_as_it_was(xcomsim_simulation, stores):
    import sqlite3

    from xcomsim.env.metadata_db import installed_clone

    dag = _probe("stored_locked")
    with xcomsim_simulation.environment() as env:
        assert env.run_dag(dag).succeeded
    key = next(reversed(xcomsim_simulation.template._stored))
    with xcomsim_simulation.environment() as env:
        clone = installed_clone()
        writer = sqlite3.connect(clone.uri, uri=True, check_same_thread=False)
        writer.execute("INSERT INTO slot_pool (pool, slots, description, include_deferred) VALUES ('mine', 1, '', 0)")
        try:  # uncommitted: the clone still counts as untouched, and the copy must not go over it
            assert clone.untouched()
            assert clone.restore_stored(key) is False
        finally:
            writer.rollback()
            writer.close()
        assert clone.untouched() and clone.restore_stored(key) is True
        assert _stored(env)["serialized_dag"][0][0] == "stored_locked"
