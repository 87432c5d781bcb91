"""Tutorial-style DataFrame backend: every DataFrame to parquet in a hard-coded bucket, the rest as Airflow does."""

import io
import uuid

import boto3
import pandas as pd
from airflow.sdk.bases.xcom import BaseXCom


class ParquetS3XCom(BaseXCom):
    PREFIX = "xcom_s3://"
    BUCKET_NAME = "frames-xcom"

    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None, **kwargs):
        if isinstance(value, pd.DataFrame):
            object_key = f"frames/{uuid.uuid4()}.parquet"
            buffer = io.BytesIO()
            value.to_parquet(buffer)
            boto3.client("s3").put_object(Bucket=ParquetS3XCom.BUCKET_NAME, Key=object_key, Body=buffer.getvalue())
            value = f"{ParquetS3XCom.PREFIX}{ParquetS3XCom.BUCKET_NAME}/{object_key}"
        return BaseXCom.serialize_value(value)

    @staticmethod
    def deserialize_value(result):
        value = BaseXCom.deserialize_value(result)
        if isinstance(value, str) and value.startswith(ParquetS3XCom.PREFIX):
            bucket, _, object_key = value[len(ParquetS3XCom.PREFIX):].partition("/")
            body = boto3.client("s3").get_object(Bucket=bucket, Key=object_key)["Body"].read()
            return pd.read_parquet(io.BytesIO(body))
        return value
