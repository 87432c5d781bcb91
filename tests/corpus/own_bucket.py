"""Team-style S3 backend: its own bucket from config, an envelope on every row, offloads above 4 KiB."""

import json

import boto3
from airflow.configuration import conf
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

MAX_INLINE = 4096  # bytes; bigger goes to S3


def _bucket():
    return conf.get("team_xcom", "bucket", fallback="team-xcom-store")


class TeamS3XCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        body = json.dumps(serialize(value), ensure_ascii=False).encode("utf-8")
        if len(body) <= MAX_INLINE:
            return {"kind": "inline", "data": serialize(value)}
        path = f"xcom/{dag_id}/{run_id}/{task_id}/{map_index}/{key}.json"
        boto3.client("s3").put_object(Bucket=_bucket(), Key=path, Body=body)
        return {"kind": "s3", "bucket": _bucket(), "key": path}

    @staticmethod
    def deserialize_value(result):
        row = result.value
        if row["kind"] == "s3":
            obj = boto3.client("s3").get_object(Bucket=row["bucket"], Key=row["key"])
            return deserialize(json.loads(obj["Body"].read()))
        return deserialize(row["data"])

    @classmethod
    def purge(cls, xcom, *args):
        row = xcom.value
        if isinstance(row, dict) and row.get("kind") == "s3":
            boto3.client("s3").delete_object(Bucket=row["bucket"], Key=row["key"])
