"""A forbidden pull fails its task with XComScopeError naming caller, source and key."""

from __future__ import annotations

from xcomsim.backend import XComScopeError


def test_forbidden_pull_fails_the_task(run_dag):
    result = run_dag("scope_violation")

    assert result.state == "failed"
    assert result.task_states == {"ingest": "success", "aggregate": "success", "report": "failed"}
    error = result.error("report")
    assert isinstance(error, XComScopeError)
    assert "task 'report' may not pull key 'raw' from task 'ingest'" in str(error)
    assert "DAG 'scope_violation'" in str(error)
