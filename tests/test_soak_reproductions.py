"""Anomalies the soak found on a real deployment, reproduced in the simulated world (docs/soak.md).

A mapped task's try killed between its push-once guard and its row (the soak's kill point) left the guard; its
retry was refused with ``XComOverwriteError`` because a sibling map index had pushed the same key: under the old
retry rule (push-once across tries, ``xcomsim.mutants.fencing.StrictAcrossTriesXCom``) a retry took a guard only
when no row was stored, and ``row_exists`` falls back to counting the task's rows of that key over every map index.
Under the fencing rule a retry of the same clear generation takes the guard whatever is stored.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from xcomsim.backend import XComPolicy

OFFLOAD = {"xcomsim.xcom_objectstorage_threshold": 1000}
VALUE = "s" * 5000  # offloaded


def _push(ti, **_):
    ti.xcom_push(key="report", value=VALUE)


with DAG("soak_mapped_stale_guard", start_date=datetime(2024, 1, 1), schedule=None) as mapped_stale_guard:
    PythonOperator.partial(task_id="owner", python_callable=_push, retries=1).expand(
        op_kwargs=[{"i": 0}, {"i": 1}])

XComPolicy(pushes={"owner": ["report"]}).attach(mapped_stale_guard)


@pytest.mark.parametrize("old_rule", [
    pytest.param(True, marks=pytest.mark.xcomsim(backend="xcomsim.mutants.fencing.StrictAcrossTriesXCom", config=OFFLOAD),
                 id="StrictAcrossTriesXCom"),
    pytest.param(False, marks=pytest.mark.xcomsim(backend="xcomsim.backend.ExclusiveXCom", config=OFFLOAD),
                 id="ExclusiveXCom"),
])  # fmt: skip
def test_a_mapped_tasks_retry_takes_over_its_stale_guard_when_a_sibling_pushed_the_key(
        run_dag, outage_during_first_push, old_rule):  # fmt: skip
    result = run_dag(mapped_stale_guard)
    assert outage_during_first_push == ["put", "delete"]
    if old_rule:  # the soak's anomaly: index 0 has no row, its sibling's row counts as one
        assert not result.succeeded
        assert "XComOverwriteError" in result.describe()
    else:
        assert result.succeeded, result.describe()
