"""The DAG runner: real Airflow semantics through the in-process path, and a faithful result."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.sdk import DAG, task


def _classic_push(ti, **_):
    ti.xcom_push(key="batch", value={"ids": [1, 2, 3]})


def _classic_pull(ti, **_):
    return len(ti.xcom_pull(task_ids="classic_push", key="batch")["ids"])


with DAG("runner_kitchen_sink", start_date=datetime(2024, 1, 1), schedule=None) as kitchen_sink:

    @task
    def seed(**context):
        return context["dag_run"].conf.get("n", 3)

    @task
    def square(i):
        return i * i

    @task
    def fan_in(values):
        return sorted(values)

    @task
    def make_range(n):
        return list(range(n))

    fan_in(square.expand(i=make_range(seed())))

    push = PythonOperator(task_id="classic_push", python_callable=_classic_push)
    pull = PythonOperator(task_id="classic_pull", python_callable=_classic_pull)
    branch = BranchPythonOperator(task_id="choose", python_callable=lambda: "taken")

    @task
    def taken():
        return "yes"

    @task
    def not_taken():
        return "no"

    push >> pull >> branch >> [taken(), not_taken()]


def test_taskflow_classic_mapped_and_branch(run_dag):
    result = run_dag(kitchen_sink, conf={"n": 4})

    assert result.succeeded, result.describe()
    assert result.xcom("fan_in") == [0, 1, 4, 9]
    assert [result.xcom("square", map_index=i) for i in range(4)] == [0, 1, 4, 9]
    assert result.task_states["square[3]"] == "success"
    assert result.xcom("classic_push", "batch") == {"ids": [1, 2, 3]}
    assert result.xcom("classic_pull") == 3
    assert result.task_states["taken"] == "success"
    assert result.task_states["not_taken"] == "skipped"
    assert result.record("classic_push", "batch").stored == {"ids": [1, 2, 3]}


def test_conf_reaches_the_run(run_dag):
    assert run_dag(kitchen_sink, conf={"n": 2}).xcom("fan_in") == [0, 1]


with DAG("runner_failure", start_date=datetime(2024, 1, 1), schedule=None) as failing_dag:

    @task
    def explode():
        raise ValueError("boom from the task")

    @task
    def after(_):
        return "never"

    after(explode())


def test_failed_task_keeps_its_exception(run_dag):
    result = run_dag(failing_dag)

    assert result.state == "failed"
    assert isinstance(result.error("explode"), ValueError)
    assert str(result.error("explode")) == "boom from the task"
    assert result.task_states == {"explode": "failed", "after": "upstream_failed"}
    assert "ValueError: boom from the task" in result.describe()


def _flaky(ti, **_):
    if ti.try_number < 2:
        raise RuntimeError("first try fails")
    return ti.try_number


with DAG("runner_retry", start_date=datetime(2024, 1, 1), schedule=None) as retry_dag:
    PythonOperator(task_id="flaky", python_callable=_flaky, retries=2, retry_delay=timedelta(hours=1))


def test_retry_runs_at_once_not_after_retry_delay(run_dag):
    result = run_dag(retry_dag)

    assert result.succeeded, result.describe()
    assert result.task("flaky").try_number == 2
    assert result.xcom("flaky") == 2
    assert result.seconds < 600  # a real wait would be an hour


def test_library_runs_without_pytest(run_python):
    proc = run_python(
        textwrap.dedent(
            """
            from xcomsim.env import Simulation

            with Simulation.start() as sim:
                from datetime import datetime
                from airflow.sdk import DAG, task

                with DAG("lib", start_date=datetime(2024, 1, 1), schedule=None) as dag:
                    @task
                    def one():
                        return 1

                    @task
                    def plus(x):
                        return x + 1

                    plus(one())
                for _ in range(2):
                    with sim.environment() as env:
                        result = env.run_dag(dag)
                        assert result.succeeded, result.describe()
                        assert len(env.xcom_rows()) == 2
                print("VALUE", result.xcom("plus"))
            """
        )
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "VALUE 2" in proc.stdout
