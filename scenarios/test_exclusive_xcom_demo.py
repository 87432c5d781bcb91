"""The seeds' demo DAG runs green and leaves exactly the XComs it declares."""

from __future__ import annotations


def test_demo_runs_green(run_dag):
    result = run_dag("exclusive_xcom_demo")

    assert result.succeeded, result.describe()
    assert result.task_states == {"extract": "success", "transform": "success", "load": "success"}
    assert result.xcom("transform", "summary") == {"count": 3, "total": 510.75}
    assert result.xcom("load") == "loaded 3 rows, total 510.75"
    keys = sorted((r.task_id, r.key) for r in result.xcoms)
    assert keys == [("extract", "raw_rows"), ("load", "return_value"), ("transform", "summary")]


def test_demo_rows_are_in_this_tests_metadata_db(run_dag, xcomsim_env):
    run_dag("exclusive_xcom_demo")

    rows = xcomsim_env.xcom_rows()
    assert {row["key"] for row in rows} == {"raw_rows", "summary", "return_value"}
    assert all(row["dag_id"] == "exclusive_xcom_demo" for row in rows)
