"""What Airflow's own BaseXCom does with values ExclusiveXCom keeps exact (README cites this)."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow.sdk import DAG, task

with DAG("basexcom_limits", start_date=datetime(2024, 1, 1), schedule=None) as limits_dag:

    @task
    def big_int():
        return 2**200 + 1

    @task
    def infinity():
        return float("inf")

    @task
    def zero_float():
        return 0.0

    big_int()
    infinity()
    zero_float()


@pytest.mark.xcomsim(backend="airflow.sdk.bases.xcom.BaseXCom")
def test_basexcom_rounds_big_ints_refuses_infinity_and_turns_zero_float_to_int(run_dag, xcomsim_env):
    result = run_dag(limits_dag)

    assert "Out of range float values are not JSON compliant" in str(result.error("infinity"))
    if xcomsim_env.engine.dialect.name == "postgresql":
        # The xcom.value column is JSONB there: numbers keep their digits and their type.
        assert result.xcom("big_int") == 2**200 + 1
        assert type(result.xcom("zero_float")) is float
        return
    assert result.xcom("big_int") != 2**200 + 1  # came back rounded
    assert type(result.xcom("zero_float")) is int  # 0.0 came back as 0


def test_exclusive_xcom_keeps_both_exact(run_dag):
    result = run_dag(limits_dag)

    assert result.succeeded, result.describe()
    assert result.xcom("big_int") == 2**200 + 1
    assert result.xcom("infinity") == float("inf")
    assert type(result.xcom("zero_float")) is float
