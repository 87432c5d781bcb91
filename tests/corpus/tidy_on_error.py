"""Careful-looking S3 backend: ``xcom_s3://<dag>/<run>/<task>/<map>/<key>`` references, and a push that fails tidies up.

Offloads from 1500 bytes to its own bucket, one object per XCom (a rerun overwrites it).
When writing the row raises, it deletes the object it uploaded, so that a failed push leaves
nothing behind; but the error may come after the row was committed (its reply lost), and
then the row names an object that is gone.
"""

import json

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "tidy-xcom"
SCHEME = "xcom_s3://"
MIN_OFFLOAD = 1500  # bytes of JSON


def _path(dag_id, run_id, task_id, map_index, key):
    return f"xcom/{dag_id}/{run_id}/{task_id}/{map_index}/{key}.json"


class TidyS3XCom(BaseXCom):
    @classmethod
    def set(cls, key, value, *, dag_id, task_id, run_id, map_index=-1, **kwargs):
        try:
            super().set(key, value, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, **kwargs)
        except Exception:
            # the push failed: do not leave its object behind
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=_path(dag_id, run_id, task_id, map_index, key))
            raise

    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        body = json.dumps(serialize(value), ensure_ascii=False).encode("utf-8")
        if len(body) < MIN_OFFLOAD:
            return {"inline": serialize(value)}
        boto3.client("s3").put_object(Bucket=BUCKET, Key=_path(dag_id, run_id, task_id, map_index, key), Body=body)
        return {"ref": f"{SCHEME}{dag_id}/{run_id}/{task_id}/{map_index}/{key}"}

    @staticmethod
    def deserialize_value(result):
        row = result.value
        if "ref" in row:
            body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"xcom/{row['ref'][len(SCHEME):]}.json")["Body"]
            return deserialize(json.loads(body.read()))
        return deserialize(row["inline"])

    @classmethod
    def purge(cls, xcom, *args):
        row = xcom.value
        if isinstance(row, dict) and "ref" in row:
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=f"xcom/{row['ref'][len(SCHEME):]}.json")
