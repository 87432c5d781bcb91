"""Pickles values bigger than 3000 bytes into S3 (base64 in the object); keeps tuples and sets exact."""

import base64
import hashlib
import pickle

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "pickled-xcom"


class PickledS3XCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        import json

        if len(json.dumps(serialize(value), ensure_ascii=False, separators=(",", ":")).encode()) < 3000:
            return {"v": serialize(value)}
        blob = base64.b64encode(pickle.dumps(value))
        digest = hashlib.sha256(f"{dag_id}/{run_id}/{task_id}/{map_index}/{key}".encode()).hexdigest()
        boto3.client("s3").put_object(Bucket=BUCKET, Key=f"pickles/{digest}.b64", Body=blob)
        return {"p": digest}

    @staticmethod
    def deserialize_value(result):
        if "p" in result.value:
            blob = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"pickles/{result.value['p']}.b64")["Body"].read()
            return pickle.loads(base64.b64decode(blob))
        return deserialize(result.value["v"])

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, dict) and "p" in xcom.value:
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=f"pickles/{xcom.value['p']}.b64")
