"""DAG files the benchmarks write: one source per shape, so every measurement runs the same DAG."""

from __future__ import annotations

import textwrap


def two_tasks(dag_id: str) -> str:
    """A DAG file of two TaskFlow tasks passing one small value (module attribute ``dag``)."""
    return textwrap.dedent(
        f"""
        from datetime import datetime
        from airflow.sdk import DAG, task

        with DAG({dag_id!r}, start_date=datetime(2024, 1, 1), schedule=None) as dag:
            @task
            def produce():
                return {{"n": 1}}

            @task
            def consume(payload):
                return payload["n"] + 1

            consume(produce())
        """
    )
