"""Unclear errors made clear: each failure the backend can meet names the problem in an XCom*Error."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from xcomsim.backend import XComPolicy, XComStoreError, XComValueError, codec
from xcomsim.backend.stores import StoreLocation


def test_a_reference_with_an_unknown_codec_is_a_store_error_naming_it():
    uri = "xcomsim+s3://aws_default@bucket/xcom/values/a/b?sha256=00&size=1&codec=zstd"
    with pytest.raises(XComStoreError, match="names compression 'zstd', which this backend does not know"):
        codec.Reference.parse(uri)


@pytest.mark.parametrize("bucket", ["MyBucket", "my_bucket", "ab", "-bucket", "a..b"])
def test_a_bucket_breaking_s3s_naming_rule_is_refused_not_lowercased(bucket):
    with pytest.raises(XComStoreError, match=f"bucket '{bucket}' breaks S3's naming rule"):
        StoreLocation.parse(f"s3://aws_default@{bucket}/xcom")


def test_a_lowercase_bucket_is_taken_as_written():
    assert StoreLocation.parse("s3://conn@my.bucket-1/xcom").bucket == "my.bucket-1"


def _push_keys(ti, **_):
    for key in ("nul\x00key", "ключ", "é" * 512):
        try:
            ti.xcom_push(key=key, value=1)
        except XComValueError as exc:
            ti.xcom_push(key=f"refused_{len(key)}", value=str(exc))


with DAG("unclear_key_errors", start_date=datetime(2024, 1, 1), schedule=None) as unclear_keys:
    PythonOperator(task_id="keys", python_callable=_push_keys)


def test_keys_that_used_to_fail_deep_in_the_http_client_are_refused_by_name(run_dag):
    result = run_dag(unclear_keys)

    assert result.succeeded, result.describe()
    assert "contains '\\x00' (U+0000)" in result.xcom("keys", "refused_7")
    assert "contains 'к' (U+043A)" in result.xcom("keys", "refused_4")
    assert "contains 'é' (U+00E9)" in result.xcom("keys", "refused_512")
    assert {r.key for r in result.xcoms} == {"refused_7", "refused_4", "refused_512"}  # nothing half-written


@pytest.fixture
def slow_down(monkeypatch):
    """S3 throttles every put: botocore raises ClientError(SlowDown)."""
    from botocore.exceptions import ClientError

    from xcomsim.backend import stores

    real = stores.S3ObjectStore._client

    class Throttled:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            if name != "put_object":
                return getattr(self.client, name)

            def put_object(**_):
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                                  "PutObject")  # fmt: skip

            return put_object

    monkeypatch.setattr(stores.S3ObjectStore, "_client", lambda self: Throttled(real(self)))


with DAG("throttled_push", start_date=datetime(2024, 1, 1), schedule=None) as throttled:
    PythonOperator(task_id="pusher", python_callable=lambda ti: ti.xcom_push(key="k", value="v"))

XComPolicy(pushes={"pusher": ["k"]}).attach(throttled)


def test_s3_throttling_is_a_store_error_naming_the_code(run_dag, slow_down):
    result = run_dag(throttled)

    error = result.error("pusher")
    assert isinstance(error, XComStoreError), result.describe()
    assert "refused put_object of 'guards/" in str(error) and "SlowDown (Please reduce your request rate.)" in str(error)
