"""Azure-blob-style: every value to a blob container, uploads of 1,000,000 bytes or more refused, reads ranged."""

import json
import uuid

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

CONTAINER = "blob-xcom"
MAX_UPLOAD = 1_000_000
READ_BYTES = 100_000


class LimitedBlobXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        data = json.dumps(serialize(value)).encode()
        if len(data) >= MAX_UPLOAD:
            raise ValueError(f"XCom value of {len(data)} bytes exceeds the container's {MAX_UPLOAD}-byte limit")
        name = f"xcom/{uuid.uuid4()}.json"
        boto3.client("s3").put_object(Bucket=CONTAINER, Key=name, Body=data)
        return {"blob": name}

    @staticmethod
    def deserialize_value(result):
        stored = result.value
        if isinstance(stored, dict) and "blob" in stored:
            reply = boto3.client("s3").get_object(Bucket=CONTAINER, Key=stored["blob"], Range=f"bytes=0-{READ_BYTES - 1}")
            return deserialize(json.loads(reply["Body"].read()))
        return BaseXCom.deserialize_value(result)

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, dict) and "blob" in xcom.value:
            boto3.client("s3").delete_object(Bucket=CONTAINER, Key=xcom.value["blob"])
