"""A task killed after its push committed: the process dies (SIGKILL) with its value stored, on its first try.

On a Celery deployment every retry of such a task got ``XComOverwriteError``
under push-once, and the DAG run failed. Under the retry rule the retry (a new
process, try 2) replaces the value of the try that failed.
"""

from __future__ import annotations

import os
import signal
from datetime import datetime, timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from xcomsim.backend import XComPolicy


def _push_then_die(ti, **_):
    ti.xcom_push(key="report", value=f"computed by try {ti.try_number}")
    if ti.try_number == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the row committed: no except, no finally


with DAG("killed_after_push", start_date=datetime(2024, 1, 1), schedule=None) as dag:
    PythonOperator(task_id="pusher", python_callable=_push_then_die, retries=1, retry_delay=timedelta(seconds=30))

XComPolicy(pushes={"pusher": ["report"]}).attach(dag)
