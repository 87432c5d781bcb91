"""Blog-post S3 backend: a hard-coded bucket, uuid-named objects, ``s3_xcom_<uuid>`` in the row, no purge."""

import json
import uuid

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "my-airflow-xcoms"
PREFIX = "s3_xcom_"


class UuidS3XCom(BaseXCom):
    @staticmethod
    def serialize_value(value, **kwargs):
        data = json.dumps(serialize(value))
        if len(data.encode()) < 1024:
            return serialize(value)
        name = str(uuid.uuid4())
        boto3.client("s3").put_object(Bucket=BUCKET, Key=f"xcoms/{name}.json", Body=data.encode())
        return PREFIX + name

    @staticmethod
    def deserialize_value(result):
        value = result.value
        if isinstance(value, str) and value.startswith(PREFIX):
            name = value[len(PREFIX):]
            body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"xcoms/{name}.json")["Body"].read()
            return deserialize(json.loads(body))
        return deserialize(value)
