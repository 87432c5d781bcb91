"""Everything to S3: every value, however small, becomes an object named by uuid; the row is its URI."""

import json
import uuid

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "all-xcoms"


class EverythingS3XCom(BaseXCom):
    @staticmethod
    def serialize_value(value, **kwargs):
        uri = f"s3://{BUCKET}/values/{uuid.uuid4().hex}"
        boto3.client("s3").put_object(Bucket=BUCKET, Key=uri.split("/", 3)[3], Body=json.dumps(serialize(value)))
        return uri

    @staticmethod
    def deserialize_value(result):
        key = result.value.split("/", 3)[3]
        return deserialize(json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()))

    @classmethod
    def purge(cls, xcom, *args):
        boto3.client("s3").delete_object(Bucket=BUCKET, Key=xcom.value.split("/", 3)[3])
