"""Everything in S3, the row holds the object key and nothing else: every row is read as a key."""

import json
import uuid

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "all-refs-xcom"


class AllRefsXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        object_key = f"values/{uuid.uuid4().hex}"
        boto3.client("s3").put_object(Bucket=BUCKET, Key=object_key, Body=json.dumps(serialize(value)).encode())
        return object_key

    @staticmethod
    def deserialize_value(result):
        body = boto3.client("s3").get_object(Bucket=BUCKET, Key=result.value)["Body"].read()
        return deserialize(json.loads(body))

    @classmethod
    def purge(cls, xcom, *args):
        boto3.client("s3").delete_object(Bucket=BUCKET, Key=xcom.value)
