"""DataFrames to CSV in S3 (a bucket from an environment variable), other values inline; the blog-post shape."""

import io
import os
import uuid

import boto3
import pandas as pd
from airflow.sdk.bases.xcom import BaseXCom


def _bucket():
    return os.environ.get("XCOM_CSV_BUCKET", "csv-xcom")


class CsvS3XCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        if isinstance(value, pd.DataFrame):
            name = f"{dag_id}/{run_id}/{task_id}/data_{uuid.uuid4().hex}.csv"
            boto3.client("s3").put_object(Bucket=_bucket(), Key=name, Body=value.to_csv().encode())
            return BaseXCom.serialize_value({"__csv__": name})
        return BaseXCom.serialize_value(value)

    @staticmethod
    def deserialize_value(result):
        value = BaseXCom.deserialize_value(result)
        if isinstance(value, dict) and "__csv__" in value:
            body = boto3.client("s3").get_object(Bucket=_bucket(), Key=value["__csv__"])["Body"].read()
            return pd.read_csv(io.BytesIO(body), index_col=0)
        return value

    @classmethod
    def purge(cls, xcom, *args):
        value = xcom.value
        if isinstance(value, dict) and "__csv__" in value:
            boto3.client("s3").delete_object(Bucket=_bucket(), Key=value["__csv__"])
