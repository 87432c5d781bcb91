"""The kit's purge-deletes-only-its-own on two more shapes of backend (from an adversarial review):
a content-addressed store, whose identical values share one object, and a purge that refuses a row
it did not write by raising. Neither may get a verdict for the kit's own reasons."""

from __future__ import annotations

from corpus import reported
from test_corpus_verdicts import _tables

BACKENDS = '''
import hashlib
import json

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize

BUCKET = "cas-xcom"


def _put(body):
    name = hashlib.sha256(body).hexdigest()
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"cas/{name}.json", Body=body)
    return name


class ContentAddressedXCom(BaseXCom):
    """Objects named by the hash of their bytes: the same value twice is one object. Purge trusts the row."""

    @staticmethod
    def serialize_value(value, **kwargs):
        body = json.dumps(serialize(value)).encode()
        return {"cas": _put(body)} if len(body) >= 100 else serialize(value)

    @staticmethod
    def deserialize_value(result):
        row = result.value
        if isinstance(row, dict) and "cas" in row:
            body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"cas/{row['cas']}.json")["Body"].read()
            return deserialize(json.loads(body))
        return deserialize(row)

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, dict) and "cas" in xcom.value:
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=f"cas/{xcom.value['cas']}.json")


class RefusingPurgeXCom(ContentAddressedXCom):
    """Records which key wrote each object and refuses, by raising, to purge any other's."""

    @staticmethod
    def serialize_value(value, *, key=None, **kwargs):
        body = json.dumps(serialize(value)).encode()
        if len(body) < 100:
            return serialize(value)
        name = _put(body)
        boto3.client("s3").put_object(Bucket=BUCKET, Key=f"owners/{name}", Body=str(key).encode())
        return {"cas": name}

    @classmethod
    def purge(cls, xcom, *args):
        if isinstance(xcom.value, dict) and "cas" in xcom.value:
            name = xcom.value["cas"]
            owner = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"owners/{name}")["Body"].read().decode()
            if owner != xcom.key:
                raise PermissionError(f"object {name} belongs to {owner!r}, not {xcom.key!r}")
            boto3.client("s3").delete_object(Bucket=BUCKET, Key=f"cas/{name}.json")
'''

MODULE = '''
import pytest
from xcomsim.conformance import XComBackendContract


@pytest.fixture(autouse=True)
def bucket(xcomsim_env):
    xcomsim_env.s3.create_bucket(Bucket="cas-xcom")


@pytest.mark.xcomsim(backend="cas_backends.ContentAddressedXCom")
class TestContentAddressed(XComBackendContract):
    pass


@pytest.mark.xcomsim(backend="cas_backends.RefusingPurgeXCom")
class TestRefusingPurge(XComBackendContract):
    pass
'''


def test_purge_verdicts_on_a_content_addressed_and_a_refusing_backend(clean_pytester, monkeypatch):
    clean_pytester.makepyfile(cas_backends=BACKENDS, test_cas=MODULE)
    monkeypatch.setenv("PYTHONPATH", f"{clean_pytester.path}:{__import__('os').environ['PYTHONPATH']}")
    result = clean_pytester.runpytest_subprocess("--xcomsim", "-p", "no:randomly", "-k", "sweeper_delete",
                                                 timeout=600)  # fmt: skip
    output = result.stdout.str()
    verdicts = {backend.rsplit(".", 1)[-1]: reported(table, "purge-deletes-only-its-own")
                for backend, table in _tables(output).items()}  # fmt: skip
    # distinct values per push give each its own object: the forged row deletes another XCom's
    assert verdicts.get("ContentAddressedXCom") == "broken", output[-3000:]
    # refusing a forged row (by raising) deletes nothing: kept, not broken
    assert verdicts.get("RefusingPurgeXCom") == "kept", output[-3000:]
