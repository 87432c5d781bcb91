"""Anomalies the soak found on a real deployment, reproduced in the simulated world (docs/soak.md).

A mapped task's try killed between its push-once guard and its row (the soak's kill point) left the guard; its
retry, after the guard lease, was refused with ``XComOverwriteError`` because a sibling map index had pushed the
same key: the reference's ``row_exists`` falls back to counting the task's rows of that key over every map index.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from xcomsim.backend import XComPolicy

LEASE = {"xcomsim.xcom_objectstorage_threshold": 1000, "xcomsim.guard_lease_seconds": 1}
VALUE = "s" * 5000  # offloaded


@pytest.fixture
def first_upload_and_guard_release_fail(monkeypatch):
    """The first value upload fails and so does the guard's release after it: a guard with no row, as a try
    SIGKILLed between the two leaves it."""
    from xcomsim.backend import XComStoreError
    from xcomsim.backend.stores import S3ObjectStore

    failed: list[str] = []
    real_put, real_delete = S3ObjectStore.put, S3ObjectStore.delete

    def put(self, name, data):
        if name.startswith("values/") and "put" not in failed:
            failed.append("put")
            raise XComStoreError("S3 store unreachable during put_object (outage)")
        return real_put(self, name, data)

    def delete(self, name):
        if name.startswith("guards/") and "delete" not in failed:
            failed.append("delete")
            raise XComStoreError("S3 store unreachable during delete_object (outage)")
        return real_delete(self, name)

    monkeypatch.setattr(S3ObjectStore, "put", put)
    monkeypatch.setattr(S3ObjectStore, "delete", delete)
    return failed


def _push_after_the_lease(ti, **_):
    if ti.try_number > 1:
        time.sleep(1.2)  # the earlier try's guard is over once it is older than the lease
    ti.xcom_push(key="report", value=VALUE)


with DAG("soak_mapped_stale_guard", start_date=datetime(2024, 1, 1), schedule=None) as mapped_stale_guard:
    PythonOperator.partial(task_id="owner", python_callable=_push_after_the_lease, retries=1).expand(
        op_kwargs=[{"i": 0}, {"i": 1}])

XComPolicy(pushes={"owner": ["report"]}).attach(mapped_stale_guard)


@pytest.mark.xcomsim(backend="xcomsim.backend.ExclusiveXCom", config=LEASE)
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="retry-can-push: the reference counts a sibling map index's row as the coordinate's "
                          "(row_exists falls back to GetXComCount over every map index); found by the soak")  # fmt: skip
def test_a_mapped_tasks_retry_takes_over_its_stale_guard_when_a_sibling_pushed_the_key(
        run_dag, first_upload_and_guard_release_fail):  # fmt: skip
    result = run_dag(mapped_stale_guard)
    assert first_upload_and_guard_release_fail == ["put", "delete"]
    assert result.succeeded, result.describe()
