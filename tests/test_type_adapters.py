"""The task runner's pydantic adapters, built once per type: the same validation, less rebuilding."""

from __future__ import annotations

import pytest


def test_the_task_runner_builds_one_adapter_per_type_and_validates_the_same(xcomsim_env):
    from pydantic import JsonValue, TypeAdapter, ValidationError
    from airflow.sdk.execution_time import task_runner

    adapter = task_runner.TypeAdapter(JsonValue)
    assert task_runner.TypeAdapter(JsonValue) is adapter  # not rebuilt for the next field
    assert TypeAdapter(JsonValue) is not TypeAdapter(JsonValue)  # pydantic itself is untouched
    value = {"rows": [1, 2.5, "x", None, {"nested": True}]}
    assert adapter.validate_python(value) == TypeAdapter(JsonValue).validate_python(value)
    with pytest.raises(ValidationError):
        adapter.validate_python({"not json": object()})  # refuses what a fresh adapter refuses
    with_config = task_runner.TypeAdapter(dict, config={"strict": True})
    assert with_config is not task_runner.TypeAdapter(dict, config={"strict": True})  # built as asked


def _greet(greeting: str) -> str:
    return greeting


def test_rendered_fields_still_reach_the_metadata_db(run_dag, xcomsim_env):
    from datetime import datetime

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    with DAG("xcomsim_templated_fields", start_date=datetime(2024, 1, 1), schedule=None) as dag:
        PythonOperator(task_id="echo", python_callable=_greet, op_kwargs={"greeting": "hello {{ dag.dag_id }}"})
    assert run_dag(dag).succeeded
    with Session(xcomsim_env.engine) as session:
        rows = session.scalars(select(RenderedTaskInstanceFields)).all()
    fields = {row.task_id: row.rendered_fields for row in rows}
    assert fields["echo"]["op_kwargs"] == {"greeting": "hello xcomsim_templated_fields"}


def test_equal_type_expressions_that_validate_differently_are_built_anew(xcomsim_env):
    from typing import Union

    from airflow.sdk.execution_time import task_runner

    ints_first, floats_first = Union[int, float], Union[float, int]
    assert ints_first == floats_first  # equal and equally hashed, yet not the same validation
    assert task_runner.TypeAdapter(ints_first).validate_python("1") == 1
    assert type(task_runner.TypeAdapter(floats_first).validate_python("1")) is float
