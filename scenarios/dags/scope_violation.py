"""A task pulls a key its policy does not allow: the task must fail with XComScopeError.

``report`` may read ``summary`` from ``aggregate`` but tries ``raw`` from ``ingest``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from xcomsim.backend import XComPolicy

with DAG("scope_violation", start_date=datetime(2023, 1, 1), schedule=None, catchup=False) as dag:

    @task
    def ingest(**context):
        context["ti"].xcom_push(key="raw", value=[1, 2, 3])

    @task
    def aggregate(**context):
        raw = context["ti"].xcom_pull(task_ids="ingest", key="raw")
        context["ti"].xcom_push(key="summary", value=sum(raw))

    @task
    def report(**context):
        return context["ti"].xcom_pull(task_ids="ingest", key="raw")

    ingest() >> aggregate() >> report()

XComPolicy(
    pushes={"ingest": ["raw"], "aggregate": ["summary"], "report": ["return_value"]},
    pulls={"aggregate": {"ingest": ["raw"]}, "report": {"aggregate": ["summary"]}},
).attach(dag)
