"""Treats any ``s3://`` string as its own reference: a user's plain "s3://data-lake/x.parquet" is fetched."""

import json

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "lookalike-xcom"


class S3UriXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        data = json.dumps(serialize(value), ensure_ascii=False).encode()
        if len(data) < 2000:
            return serialize(value)
        name = f"{dag_id}/{run_id}/{task_id}/{key}"
        boto3.client("s3").put_object(Bucket=BUCKET, Key=name, Body=data)
        return f"s3://{BUCKET}/{name}"

    @staticmethod
    def deserialize_value(result):
        value = result.value
        if isinstance(value, str) and value.startswith("s3://"):  # the bug: any s3:// string
            bucket, _, name = value[5:].partition("/")
            return deserialize(json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=name)["Body"].read()))
        return deserialize(value)

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, str) and xcom.value.startswith(f"s3://{BUCKET}/"):
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=xcom.value.split("/", 3)[3])
