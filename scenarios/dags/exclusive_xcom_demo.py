"""The seeds' exclusive_xcom_demo: extract -> transform -> load with classic PythonOperators.

Each task pushes under its own explicit key and pulls only from its direct upstream;
the policy at the bottom says exactly that, and the ExclusiveXCom backend enforces it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from xcomsim.backend import XComPolicy


def extract(ti, **_):
    rows = [{"id": 1, "amount": 120.5}, {"id": 2, "amount": 80.0}, {"id": 3, "amount": 310.25}]
    ti.xcom_push(key="raw_rows", value=rows)


def transform(ti, **_):
    rows = ti.xcom_pull(task_ids="extract", key="raw_rows")
    total = round(sum(row["amount"] for row in rows), 2)
    ti.xcom_push(key="summary", value={"count": len(rows), "total": total})


def load(ti, **_):
    summary = ti.xcom_pull(task_ids="transform", key="summary")
    return f"loaded {summary['count']} rows, total {summary['total']}"


with DAG("exclusive_xcom_demo", start_date=datetime(2023, 1, 1), schedule=None, catchup=False) as dag:
    t1 = PythonOperator(task_id="extract", python_callable=extract)
    t2 = PythonOperator(task_id="transform", python_callable=transform)
    t3 = PythonOperator(task_id="load", python_callable=load)
    t1 >> t2 >> t3

XComPolicy(
    pushes={"extract": ["raw_rows"], "transform": ["summary"], "load": ["return_value"]},
    pulls={"transform": {"extract": ["raw_rows"]}, "load": {"transform": ["summary"]}},
).attach(dag)
