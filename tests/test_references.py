"""How the kit tells which object a row refers to, and forges one: by behaviour, for any reference shape."""

from __future__ import annotations

import uuid

import pytest

from xcomsim.checks.values import object_key
from xcomsim.conformance.liveness import _beside, _replace
from xcomsim.conformance.references import refers_to, token_in
from xcomsim.conformance.stores import plant, store_sizes

UUID = "8db040cb-e803-4f38-b4bb-2f00925d9967"


@pytest.mark.parametrize(
    ("row", "name", "token"),
    [
        ({"kind": "s3", "bucket": "b", "key": "xcom/d/r/t/-1/k.json"}, "s3://b/xcom/d/r/t/-1/k.json", "xcom/d/r/t/-1/k.json"),
        (f"s3_xcom_{UUID}", f"s3://my-bucket/xcoms/{UUID}.json", UUID),  # the uuid stem only
        (["r", "xcom:d:r:t:-1:k"], "redis/3:xcom:d:r:t:-1:k", "xcom:d:r:t:-1:k"),  # a Redis DB other than 0
        ({"file": "/tmp/x/d/t.-1.k.json"}, "file:///tmp/x/d/t.-1.k.json", "/tmp/x/d/t.-1.k.json"),
        ("s3://b/other/thing.json", "s3://b/xcom/k.json", None),
    ],
)
def test_the_token_a_row_names_an_object_by(row, name, token):
    assert token_in(row, name) == token
    assert refers_to(row, name) == (token is not None)


def test_object_keys_of_every_store():
    assert object_key("s3://b/a/b.json") == "a/b.json"
    assert object_key("redis:k") == "k" and object_key("redis/3:x:y") == "x:y"
    assert object_key("file:///tmp/a b/c") == "/tmp/a b/c"


def test_a_forgery_replaces_inside_the_rows_structure():
    """Written back through the JSON column, a dict must stay a dict (a str of it was a silent no-op)."""
    row = {"kind": "s3", "key": "xcom/a.json", "meta": ["xcom/a.json", 3]}
    assert _replace(row, "xcom/a.json", "data/b.parquet") == {"kind": "s3", "key": "data/b.parquet",
                                                              "meta": ["data/b.parquet", 3]}


def test_a_users_objects_are_planted_in_the_store_beside_the_xcoms(xcomsim_env, tmp_path):
    from xcomsim.conformance.stores import watch_directory

    watch_directory(tmp_path)
    bucket = f"team-bucket-{uuid.uuid4().hex[:12]}"  # a real S3 endpoint is shared with other sessions
    xcomsim_env.s3.create_bucket(Bucket=bucket)
    for own in (f"s3://{bucket}/xcom/k.json", "redis:xcom:k", f"file://{tmp_path}/xcom/k.json"):
        for name in _beside(own):
            plant(xcomsim_env, name, b"user data")
        assert set(_beside(own)) <= set(store_sizes(xcomsim_env)), own
    with pytest.raises(ValueError, match="no store is named by 'gs://b/k'"):
        plant(xcomsim_env, "gs://b/k", b"")
