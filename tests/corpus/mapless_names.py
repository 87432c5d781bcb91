"""Values of 2 KiB and more to S3 under ``xcom/<dag>/<run>/<task>/<key>.json`` (no map index in the name)."""

import json

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "shared-names-xcom"


class SharedNameXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        body = json.dumps(serialize(value)).encode()
        if len(body) < 2048:
            return {"value": serialize(value)}
        name = f"xcom/{dag_id}/{run_id}/{task_id}/{key}.json"
        boto3.client("s3").put_object(Bucket=BUCKET, Key=name, Body=body)
        return {"s3_key": name}

    @staticmethod
    def deserialize_value(result):
        row = result.value
        if isinstance(row, dict) and "s3_key" in row:
            return deserialize(json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=row["s3_key"])["Body"].read()))
        if isinstance(row, dict) and "value" in row:
            return deserialize(row["value"])
        return BaseXCom.deserialize_value(result)

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, dict) and "s3_key" in xcom.value:
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=xcom.value["s3_key"])
