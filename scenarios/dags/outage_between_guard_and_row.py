"""A task whose first try meets an object-store outage between taking the push-once guard and writing its row.

In the first try (a real task process) the upload of the offloaded value fails,
and so does the release of the guard after it: the guard is left behind with
no row. The retry, a new process, must be able to push the key, since no value
was ever stored.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from xcomsim.backend import XComPolicy


def _outage_on_first_try(ti, **_):
    if ti.try_number == 1:
        from xcomsim.backend import XComStoreError, stores

        def down(self, name, *args):
            raise XComStoreError(f"S3 store unreachable while writing {name} (outage)")

        stores.S3ObjectStore.put = down
        stores.S3ObjectStore.delete = down
    ti.xcom_push(key="report", value="r" * 5000)


with DAG("outage_between_guard_and_row", start_date=datetime(2024, 1, 1), schedule=None) as dag:
    PythonOperator(task_id="pusher", python_callable=_outage_on_first_try, retries=1)

XComPolicy(pushes={"pusher": ["report"]}).attach(dag)
