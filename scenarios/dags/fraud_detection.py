"""The seeds' fraud_detection DAG: five tasks with their key map, plus a ShortCircuitOperator.

Keys follow the seeds: fetch_transactions -> raw_txns, validate -> valid_txns and
error_count, feature_engineering -> features, fraud_model -> score. check_score
pulls score and lets alert run only for a risky batch. ``conf["amounts"]``
overrides the transactions, so tests can drive both branches.
"""

from __future__ import annotations

import json
from datetime import datetime

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, task

from xcomsim.backend import XComPolicy

DEFAULT_AMOUNTS = [12.5, 80.0, 9400.0, -3.0, 15.25]

with DAG("fraud_detection", start_date=datetime(2023, 1, 1), schedule=None, catchup=False) as dag:

    @task(retries=0)
    def fetch_transactions(**context):
        amounts = context["dag_run"].conf.get("amounts", DEFAULT_AMOUNTS)
        txns = [{"id": i, "amount": a} for i, a in enumerate(amounts)]
        context["ti"].xcom_push(key="raw_txns", value=json.dumps(txns))

    @task
    def validate(**context):
        ti = context["ti"]
        txns = json.loads(ti.xcom_pull(task_ids="fetch_transactions", key="raw_txns"))
        valid = [t for t in txns if t["amount"] > 0]
        ti.xcom_push(key="valid_txns", value=valid)
        ti.xcom_push(key="error_count", value=len(txns) - len(valid))

    @task
    def feature_engineering(**context):
        ti = context["ti"]
        valid = ti.xcom_pull(task_ids="validate", key="valid_txns")
        amounts = [t["amount"] for t in valid]
        features = {"count": len(amounts), "max": max(amounts), "mean": sum(amounts) / len(amounts)}
        ti.xcom_push(key="features", value=features)

    @task
    def fraud_model(**context):
        ti = context["ti"]
        features = ti.xcom_pull(task_ids="feature_engineering", key="features")
        errors = ti.xcom_pull(task_ids="validate", key="error_count")
        score = min(1.0, features["max"] / 10_000 + 0.05 * errors)
        ti.xcom_push(key="score", value=round(score, 4))

    check_score = ShortCircuitOperator(
        task_id="check_score",
        python_callable=lambda **context: context["ti"].xcom_pull(task_ids="fraud_model", key="score") > 0.8,
    )

    @task
    def alert(**context):
        score = context["ti"].xcom_pull(task_ids="fraud_model", key="score")
        return f"ALERT: fraud score {score}"

    fetch_transactions() >> validate() >> feature_engineering() >> fraud_model() >> check_score >> alert()

XComPolicy(
    pushes={
        "fetch_transactions": ["raw_txns"],
        "validate": ["valid_txns", "error_count"],
        "feature_engineering": ["features"],
        "fraud_model": ["score"],
        "check_score": ["return_value"],
        "alert": ["return_value"],
    },
    pulls={
        "validate": {"fetch_transactions": ["raw_txns"]},
        "feature_engineering": {"validate": ["valid_txns"]},
        "fraud_model": {"feature_engineering": ["features"], "validate": ["error_count"]},
        "check_score": {"fraud_model": ["score"]},
        "alert": {"fraud_model": ["score"]},
    },
).attach(dag)
