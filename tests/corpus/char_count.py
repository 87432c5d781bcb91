"""Counts characters, not bytes: ``len(json_text) >= 1000`` decides, so multi-byte text stays inline too long."""

import json

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "char-count-xcom"


class CharCountXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        text = json.dumps(serialize(value), ensure_ascii=False)
        if len(text) < 1000:  # the bug: characters, not UTF-8 bytes
            return {"inline": serialize(value)}
        name = f"{dag_id}/{run_id}/{task_id}/{map_index}/{key}"
        boto3.client("s3").put_object(Bucket=BUCKET, Key=name, Body=text.encode())
        return {"object": name}

    @staticmethod
    def deserialize_value(result):
        if "object" in result.value:
            body = boto3.client("s3").get_object(Bucket=BUCKET, Key=result.value["object"])["Body"].read()
            return deserialize(json.loads(body))
        return deserialize(result.value["inline"])

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, dict) and "object" in xcom.value:
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=xcom.value["object"])
