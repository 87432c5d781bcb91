"""The seeds' fraud_detection DAG under ExclusiveXCom: keys as declared, short circuit on score."""

from __future__ import annotations


def test_risky_batch_raises_alert(run_dag):
    result = run_dag("fraud_detection")

    assert result.succeeded, result.describe()
    assert result.xcom("fraud_model", "score") == 0.99
    assert result.xcom("validate", "error_count") == 1
    assert result.task_states["check_score"] == "success"
    assert result.xcom("alert") == "ALERT: fraud score 0.99"
    pushed = {(r.task_id, r.key) for r in result.xcoms} - {("check_score", "skipmixin_key")}
    assert pushed == {
        ("fetch_transactions", "raw_txns"),
        ("validate", "valid_txns"),
        ("validate", "error_count"),
        ("feature_engineering", "features"),
        ("fraud_model", "score"),
        ("check_score", "return_value"),
        ("alert", "return_value"),
    }


def test_quiet_batch_short_circuits(run_dag):
    result = run_dag("fraud_detection", conf={"amounts": [10.0, 20.0, 30.0]})

    assert result.succeeded, result.describe()
    assert result.xcom("fraud_model", "score") == 0.003
    assert result.task_states["alert"] == "skipped"
