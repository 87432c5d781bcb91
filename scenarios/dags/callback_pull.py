"""A task whose on_success_callback pulls a key its policy does not grant it.

Callbacks run after the task, outside Airflow's task context. The callback
pushes what it saw (the value, or the error's name) under a key its task may
push, so a test can read the outcome from a real task process.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from xcomsim.backend import XComPolicy


def _push_secret(ti, **_):
    ti.xcom_push(key="secret", value="classified")


def _pull_in_callback(context):
    ti = context["ti"]
    try:
        seen = ti.xcom_pull(task_ids="source", key="secret")
    except Exception as exc:
        seen = f"{type(exc).__name__}: {exc}"
    ti.xcom_push(key="callback_saw", value=seen)


with DAG("callback_pull", start_date=datetime(2024, 1, 1), schedule=None) as dag:
    PythonOperator(task_id="source", python_callable=_push_secret) >> PythonOperator(
        task_id="watcher", python_callable=lambda: None, on_success_callback=_pull_in_callback
    )

XComPolicy(pushes={"source": ["secret"], "watcher": ["callback_saw"]}).attach(dag)
