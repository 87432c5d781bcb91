"""Fidelity: Airflow's own example DAGs end the same under ``run_dag`` as under plain ``dag.test()``.

The DAGs are loaded at run time from the installed Airflow packages (never copied
here). Each one runs twice in this process, each time on a fresh clone of the
metadata DB: once through ``run_dag`` and once through ``dag.test()``; the run's
final state and every task instance's state must be equal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from xcomsim.errors import DagRunStuckError

pytestmark = pytest.mark.xcomsim(run_timeout=60)


def _example_folders() -> list[Path]:
    """The example folders inside the installed wheels, found without importing Airflow."""
    import importlib.util

    spec = importlib.util.find_spec("airflow")
    assert spec is not None and spec.submodule_search_locations
    roots = [Path(p) for p in spec.submodule_search_locations]
    folders = []
    for root in roots:
        for relative in ("example_dags", "providers/standard/example_dags"):
            if (root / relative).is_dir():
                folders.append(root / relative)
    return folders


FOLDERS = _example_folders()
FILES = sorted(p for folder in FOLDERS for p in folder.glob("*.py") if p.name != "__init__.py")

# dag.test() has no way to finish these here; each reason is checked below where it can be.
EXCLUDED: dict[str, str] = {}

# How long plain dag.test() may take before the comparison counts it as not completing.
DAG_TEST_LIMIT = 60


@pytest.fixture(scope="module")
def example_bag(xcomsim_simulation):
    """Every example DAG, parsed once for the module, keyed by the file it lives in."""
    from airflow.dag_processing.dagbag import DagBag

    by_file: dict[str, list[Any]] = {}
    errors: dict[str, str] = {}
    for folder in FOLDERS:
        bag = DagBag(dag_folder=str(folder), safe_mode=False)
        for dag in bag.dags.values():
            by_file.setdefault(Path(dag.fileloc).name, []).append(dag)
        errors.update({Path(f).name: e for f, e in bag.import_errors.items()})
    return by_file, errors


class _DagTestTimeout(BaseException):
    """Raised in the main thread when plain dag.test() outlives DAG_TEST_LIMIT."""


@contextlib.contextmanager
def _alarm(seconds: float):
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _DagTestTimeout(f"dag.test() still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)  # again each second: task runners catch it
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _store(dags) -> None:
    """Serialise ``dags`` as the DAG processor would: dag.test() only runs DAGs already in the DB."""
    from airflow import settings
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    session = settings.Session()
    try:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(d) for d in dags], {}, None, set(), session=session
        )
        session.commit()
    finally:
        session.close()


def _dag_test_states(dag, siblings, empty_folder) -> tuple[str, dict[str, str | None]]:
    """Plain dag.test(), after storing the file's DAGs, with an empty dags folder for it to re-parse."""
    import os
    from unittest import mock

    from airflow import settings
    from airflow.models.dagrun import DagRun

    _store(siblings)
    with _alarm(DAG_TEST_LIMIT), mock.patch.dict(os.environ, {"AIRFLOW__CORE__DAGS_FOLDER": str(empty_folder)}):
        dag_run = dag.test()
    session = settings.Session()
    try:
        run = session.get(DagRun, dag_run.id)
        states = {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): (None if ti.state is None else str(ti.state))
            for ti in run.get_task_instances(session=session)
        }
        return str(run.state), states
    finally:
        session.close()


def _run_dag_states(env, dag) -> tuple[str, dict[str, str | None]]:
    result = env.run_dag(dag)
    return result.state, result.task_states


@pytest.mark.parametrize("filename", [p.name for p in FILES])
def test_example_dag_matches_dag_test(filename, example_bag, xcomsim_env):
    by_file, errors = example_bag
    if filename in EXCLUDED:
        pytest.skip(EXCLUDED[filename])
    assert filename not in errors, f"{filename} failed to import: {errors[filename]}"
    for dag in sorted(by_file.get(filename, []), key=lambda d: d.dag_id):
        xcomsim_env.reset()
        try:
            ours = _run_dag_states(xcomsim_env, dag)
        except DagRunStuckError as exc:
            ours = ("stuck", {"error": str(exc)})
        xcomsim_env.reset()
        theirs = _dag_test_states(dag)
        assert ours == theirs, dag.dag_id
