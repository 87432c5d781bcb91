"""Provider-style S3 backend: the row is the bare object key (no scheme), bucket from an env var."""

import json
import os

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

THRESHOLD = 2048


def bucket():
    return os.environ.get("XCOM_BUCKET", "xcom-bare-keys")


class BareKeyXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        payload = json.dumps(serialize(value), ensure_ascii=False, separators=(",", ":")).encode()
        if len(payload) > THRESHOLD:
            object_key = f"airflow-xcom/{dag_id}/{run_id}/{task_id}_{map_index}_{key}"
            boto3.resource("s3").Object(bucket(), object_key).put(Body=payload)
            return object_key
        return serialize(value)

    @staticmethod
    def deserialize_value(result):
        stored = result.value
        if isinstance(stored, str) and stored.startswith("airflow-xcom/"):
            body = boto3.resource("s3").Object(bucket(), stored).get()["Body"].read()
            return deserialize(json.loads(body))
        return deserialize(stored)

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, str) and xcom.value.startswith("airflow-xcom/"):
            boto3.resource("s3").Object(bucket(), xcom.value).delete()
