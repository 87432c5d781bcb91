"""A multi-MB payload passed between tasks: the xcom table keeps only a reference.

``produce`` builds about 4 MB of records; ``summarise`` reads them back through
the backend and returns a small summary, which stays inline.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from xcomsim.backend import XComPolicy

ROWS = 40_000

with DAG("s3_offload_pipeline", start_date=datetime(2023, 1, 1), schedule=None, catchup=False) as dag:

    @task
    def produce():
        return [{"id": i, "payload": f"row-{i:08d}-" + "x" * 80} for i in range(ROWS)]

    @task
    def summarise(rows):
        return {"rows": len(rows), "last": rows[-1]["id"]}

    summarise(produce())

XComPolicy(pushes={"produce": ["return_value"], "summarise": ["return_value"]}).attach(dag)
