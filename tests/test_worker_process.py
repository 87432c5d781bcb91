"""The reference backend as a real worker runs it: a forked task process that parses the DAG file itself."""

from __future__ import annotations

import pytest

from xcomsim.backend import policy
from xcomsim.runner import TaskProcessError


@pytest.fixture
def no_policies_in_the_parent(xcomsim_simulation, monkeypatch):
    """The task process must find the policy by parsing the DAG file, not inherit it from us."""
    xcomsim_simulation.dags.get("scope_violation")  # the parent's own parse happens first
    monkeypatch.setattr(policy, "_REGISTRY", {})


def test_scope_violation_is_refused_in_the_worker(xcomsim_env, no_policies_in_the_parent):
    result = xcomsim_env.run_dag("scope_violation", worker_process=True)

    assert result.task_states == {"ingest": "success", "aggregate": "success", "report": "failed"}
    error = result.error("report")
    assert isinstance(error, TaskProcessError) and error.exc_type == "XComScopeError"
    assert "task 'report' may not pull key 'raw' from task 'ingest'" in error.message
    assert policy._REGISTRY == {}  # only the task processes registered it


def test_offload_pipeline_in_the_worker(xcomsim_env):
    result = xcomsim_env.run_dag("s3_offload_pipeline", worker_process=True)

    assert result.succeeded, result.describe()
    assert result.record("produce").stored.startswith(f"xcomsim+s3://aws_default@{xcomsim_env.bucket}/xcom/values/")
    assert result.xcom("summarise") == {"rows": 40_000, "last": 39_999}


def test_inline_dags_cannot_use_worker_processes(xcomsim_env):
    from datetime import datetime

    from airflow.sdk import DAG, task
    from xcomsim.errors import ConfigError

    with DAG("inline_only", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def t():
            return 1

        t()
    with pytest.raises(ConfigError, match="runs DAG files from the dags folder"):
        xcomsim_env.run_dag(dag, worker_process=True)
