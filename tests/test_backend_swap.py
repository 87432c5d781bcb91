"""The backend chosen per test reaches every place Airflow bound the XCom class."""

from __future__ import annotations

import sys
from datetime import datetime

import pytest

from airflow.sdk import DAG, task

with DAG("swap_probe", start_date=datetime(2024, 1, 1), schedule=None) as swap_dag:

    @task
    def numbers():
        return [1, 2, 3]

    @task
    def double(x):
        return x * 2

    @task
    def total(values):
        return sum(values)  # pulls through lazy_sequence: the backend deserialises each item

    total(double.expand(x=numbers()))

BOUND = [
    "airflow.sdk.execution_time.xcom",
    "airflow.sdk.execution_time.task_runner",
    "airflow.models",
]


def _assert_backend_everywhere(env, run_dag, tag):
    assert env.backend.TAG == tag
    for module in BOUND:
        assert sys.modules[module].XCom is env.backend, module
    import airflow.models

    assert airflow.models.XCom is env.backend
    result = run_dag(swap_dag)
    assert result.succeeded, result.describe()
    assert {r.stored["tag"] for r in result.xcoms} == {tag}
    assert result.xcom("total") == 12


@pytest.mark.xcomsim(backend="xcom_backends.TaggingXComA")
def test_backend_a_sees_only_itself(xcomsim_env, run_dag):
    _assert_backend_everywhere(xcomsim_env, run_dag, "A")


@pytest.mark.xcomsim(backend="xcom_backends.TaggingXComB")
def test_backend_b_sees_only_itself(xcomsim_env, run_dag):
    _assert_backend_everywhere(xcomsim_env, run_dag, "B")


def test_default_backend_is_the_reference_exclusive_xcom(xcomsim_env, run_dag):
    from xcomsim.backend import ExclusiveXCom

    assert xcomsim_env.backend is ExclusiveXCom
    assert run_dag(swap_dag).record("total").stored == 12


@pytest.mark.xcomsim(backend="airflow.sdk.bases.xcom.BaseXCom")
def test_airflows_own_backend_by_marker(xcomsim_env, run_dag):
    from airflow.sdk.bases.xcom import BaseXCom

    assert xcomsim_env.backend is BaseXCom
    assert run_dag(swap_dag).record("total").stored == 12


def test_runtime_lookups_follow_the_swap(xcomsim_env):
    # comms and lazy_sequence import XCom at call time from the resolving module.
    from airflow.sdk.execution_time.xcom import XCom

    assert XCom is xcomsim_env.backend
