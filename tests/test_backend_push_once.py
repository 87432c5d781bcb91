"""Push-once: an XCom coordinate is written at most once, atomically; the first value survives."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task
from xcomsim.backend import XComOverwriteError, XComPolicy
from xcomsim.backend.stores import open_store
from xcomsim.backend.guard import Guard, Holder

with DAG("push_twice", start_date=datetime(2024, 1, 1), schedule=None) as push_twice:

    @task
    def twice(**context):
        context["ti"].xcom_push(key="k", value="first")
        context["ti"].xcom_push(key="k", value="second")

    twice()

XComPolicy(pushes={"twice": ["k"]}).attach(push_twice)


def test_second_push_in_one_try_raises_and_first_value_stays(run_dag):
    result = run_dag(push_twice)

    assert isinstance(result.error("twice"), XComOverwriteError)
    assert "XCom key 'k' of DAG 'push_twice', task 'twice'" in str(result.error("twice"))
    assert result.xcom("twice", "k") == "first"


def _push_then_fail(ti, **_):
    ti.xcom_push(key="k", value=f"try {ti.try_number}")
    if ti.try_number == 1:
        raise RuntimeError("first try fails after pushing")


with DAG("push_retry_strict", start_date=datetime(2024, 1, 1), schedule=None) as strict_retry:
    PythonOperator(task_id="flaky", python_callable=_push_then_fail, retries=1)

XComPolicy(pushes={"flaky": ["k"]}).attach(strict_retry)

with DAG("push_retry_replaces", start_date=datetime(2024, 1, 1), schedule=None) as replacing_retry:
    PythonOperator(task_id="flaky", python_callable=_push_then_fail, retries=1)

XComPolicy(pushes={"flaky": ["k"]}, retry_replaces=True).attach(replacing_retry)


def test_a_retry_replaces_the_value_of_the_try_that_failed(run_dag):
    """The retry rule: the try that pushed failed, so its value was never final; its retry's value is stored."""
    result = run_dag(strict_retry)

    assert result.succeeded, result.describe()
    assert result.task("flaky").try_number == 2
    assert result.xcom("flaky", "k") == "try 2"


def test_retry_replaces_is_an_explicit_escape(run_dag):
    result = run_dag(replacing_retry)

    assert result.succeeded, result.describe()
    assert result.task("flaky").try_number == 2
    assert result.xcom("flaky", "k") == "try 2"


PUSH = {"digest": "d", "stored": "v", "obj": None, "replaces": False, "row_exists": lambda: True}


@pytest.mark.parametrize("store_kind", ["s3", "redis"])
def test_racing_pushers_exactly_one_wins(xcomsim_env, store_kind):
    path = f"s3://aws_default@{xcomsim_env.bucket}/race" if store_kind == "s3" else "redis://redis_default/race"
    store = open_store(path)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def pusher(n: int) -> None:
        guard = Guard(store, "dag", "run", "task", -1, "k")
        barrier.wait()
        try:
            guard.acquire(Holder(1), **PUSH)
            outcomes.append(f"won {n}")
        except XComOverwriteError:
            outcomes.append("lost")

    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(o.startswith("won") for o in outcomes) == 1
    assert outcomes.count("lost") == 7


def test_guard_release_undoes_a_failed_write(xcomsim_env):
    store = open_store(f"s3://aws_default@{xcomsim_env.bucket}/release")
    guard = Guard(store, "dag", "run", "task", -1, "k")
    guard.acquire(Holder(1), **PUSH)
    guard.release()
    again = Guard(store, "dag", "run", "task", -1, "k")
    again.acquire(Holder(1), **PUSH)  # would raise if the first had stayed
    with pytest.raises(XComOverwriteError):
        Guard(store, "dag", "run", "task", -1, "k").acquire(Holder(1), **PUSH)
