"""The S3 a test sees: moto's server on loopback, reached over HTTP.

An HTTP endpoint serves every S3 client alike: boto3 (via ``AWS_ENDPOINT_URL_S3``
or the ``aws_default`` connection's ``endpoint_url``), ``S3Hook``, and s3fs
behind ``ObjectStoragePath("s3://aws_default@bucket/...")``, which in-process
interception does not reach. Between tests moto's state is reset and the bucket
created again.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

REGION = "us-east-1"
ACCESS_KEY = "xcomsim"
SECRET_KEY = "xcomsim-secret"


class S3Store:
    def __init__(self, bucket: str) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self.bucket = bucket
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def reset(self, bucket: str | None = None) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        self.bucket = bucket or self.bucket
        self.client().create_bucket(Bucket=self.bucket)

    def environment(self) -> dict[str, str]:
        """Variables that route any boto3/botocore client, and ``aws_default``, here."""
        extra = {"endpoint_url": self.endpoint, "region_name": REGION}
        conn = {"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY, "extra": extra}
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn),
        }

    def close(self) -> None:
        self._server.stop()
