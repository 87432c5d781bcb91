"""The S3 a test sees: moto's server on loopback (a child process), or any S3 endpoint, over HTTP.

An HTTP endpoint serves every S3 client alike: boto3 (via ``AWS_ENDPOINT_URL_S3``
or the ``aws_default`` connection's ``endpoint_url``), ``S3Hook``, and s3fs
behind ``ObjectStoragePath("s3://aws_default@bucket/...")``, which in-process
interception does not reach. botocore clients send their requests for the embedded
endpoint to the same child without HTTP (``s3_direct``). Between tests moto's state
is reset and the bucket created again.

On an endpoint given to the harness (``S3Endpoint``: a real S3-compatible
server, or moto started on its own) bucket names are shared by everyone using
it, so each test gets a bucket of its own, ``<bucket>-<tag>-<n>``, created when
the test starts and emptied and deleted when it ends.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from xcomsim.env import s3_direct
from xcomsim.env.child_server import OBJECTS_PATH, RESET_PATH
from xcomsim.env.naming import mask_url, next_number, process_tag
from xcomsim.errors import ServiceError

REGION = "us-east-1"
ACCESS_KEY = "xcomsim"
SECRET_KEY = "xcomsim-secret"
CONNECT_TIMEOUT = 3
READ_TIMEOUT = 30
CHECK_TIMEOUT = 5  # a server that accepts but never answers


class S3Store:
    """moto's server in a child process (``child_server``), reset to one empty bucket per test."""

    def __init__(self, bucket: str) -> None:
        from xcomsim.env.child_server import ChildServer

        self.bucket = bucket
        self._server = ChildServer("moto")
        self.endpoint = f"http://{self._server.host}:{self._server.port}"
        assert self._server.direct_port is not None
        s3_direct.serve(self.endpoint, (self._server.host, self._server.direct_port))

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
        """Every store of moto's emptied and ``bucket`` created, in one request (a no-op when no
        request reached the server since the last reset of the same bucket)."""
        self._server.wait_ready()
        self.bucket = bucket or self.bucket
        query = urllib.parse.urlencode({"bucket": self.bucket})
        request = urllib.request.Request(f"{self.endpoint}{RESET_PATH}?{query}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT):
                pass
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"xcomsim: resetting the embedded S3 to bucket {self.bucket!r} failed: "
                               f"{exc.read().decode(errors='replace')}") from None  # fmt: skip

    def objects(self) -> dict[str, int]:
        """``s3://bucket/key`` -> size of every object on the server, in one request to the child."""
        self._server.wait_ready()
        with urllib.request.urlopen(f"{self.endpoint}{OBJECTS_PATH}", timeout=READ_TIMEOUT) as reply:
            return json.loads(reply.read())

    def open_bucket(self, bucket: str) -> str:
        """The start of a test: an empty server with ``bucket``; returns the bucket's name."""
        self.reset(bucket)
        return bucket

    def empty(self, bucket: str) -> None:
        self.reset(bucket)

    def close_bucket(self, bucket: str) -> None:
        """The end of a test: nothing to do, the next test's reset wipes the server."""

    def environment(self) -> dict[str, str]:
        """Variables that route any boto3/botocore client, and ``aws_default``, here."""
        return _environment(self.endpoint, ACCESS_KEY, SECRET_KEY, REGION)

    def close(self) -> None:
        s3_direct.forget(self.endpoint)
        self._server.close()


def _environment(endpoint: str, access_key: str, secret_key: str, region: str) -> dict[str, str]:
    extra = {"endpoint_url": endpoint, "region_name": region}
    conn = {"conn_type": "aws", "login": access_key, "password": secret_key, "extra": extra}
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn),
    }


class S3Endpoint:
    """An S3-compatible endpoint over HTTP(S): ``http://[KEY:SECRET@]host:port``.

    Credentials come from the URL, else from ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``, else moto's accept-anything defaults.
    """

    def __init__(self, endpoint: str):
        self.shown = mask_url(endpoint)
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceError(f"xcomsim s3 endpoint {self.shown!r} is not an http(s)://host:port URL")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self.endpoint = urllib.parse.urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))
        self.access_key = urllib.parse.unquote(parts.username or "") or os.environ.get("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        self.secret_key = urllib.parse.unquote(parts.password or "") or os.environ.get("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        self.region = os.environ.get("AWS_DEFAULT_REGION", REGION)

    def client(self, retries: int = 3, read_timeout: float = READ_TIMEOUT) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=read_timeout,
                        retries={"total_max_attempts": retries, "mode": "standard"})  # fmt: skip
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, config=config,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )  # fmt: skip

    def check(self) -> None:
        """Fail fast, naming the endpoint and what to fix."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client(retries=1, read_timeout=CHECK_TIMEOUT).list_buckets()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"):
                raise ServiceError(
                    f"xcomsim s3 endpoint {self.shown}: the server refused the credentials ({code}); put them in the "
                    "URL (http://KEY:SECRET@host:port) or in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                ) from None
            raise ServiceError(f"xcomsim s3 endpoint {self.shown}: {exc}") from None
        except BotoCoreError as exc:
            raise ServiceError(
                f"xcomsim s3 endpoint {self.shown}: no S3 answered within {CHECK_TIMEOUT}s; "
                f"start the server or fix host and port ({exc})"
            ) from None

    def open_bucket(self, bucket: str) -> str:
        """A new bucket for one test, named after ``bucket``: ``<bucket>-<tag>-<n>``."""
        suffix = f"-{process_tag()}-{next_number()}"
        name = re.sub(r"[.-]+$", "", bucket[: 63 - len(suffix)]) + suffix
        self.client().create_bucket(Bucket=name)
        return name

    def empty(self, bucket: str) -> None:
        client = self.client()
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                      for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]  # fmt: skip
            if doomed:
                client.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])

    def close_bucket(self, bucket: str) -> None:
        """The end of a test: empty the bucket and delete it."""
        from botocore.exceptions import ClientError

        try:
            self.empty(bucket)
            self.client().delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":  # the test deleted it itself
                raise

    def environment(self) -> dict[str, str]:
        return _environment(self.endpoint, self.access_key, self.secret_key, self.region)

    def close(self) -> None:
        pass
