"""The codec at the backend level: sizes, references, escapes, fixed object names."""

from __future__ import annotations

import pytest

from xcomsim.backend import XComStoreError, XComValueError
from xcomsim.backend.codec import (
    ESCAPE_KEY,
    Reference,
    decode_bytes,
    decode_inline,
    encode,
    inline,
    is_reference,
    object_name,
)


def test_size_is_the_serialised_json_length():
    assert encode("abc", key="k", task_id="t").size == 5
    assert encode({"a": 1}, key="k", task_id="t").size == len('{"a":1}')
    assert encode("é", key="k", task_id="t").size == 4  # UTF-8 bytes, not characters


@pytest.mark.parametrize(
    "value",
    ["xcomsim+s3://looks/like/a/ref", {ESCAPE_KEY: "already escaped"}, float("nan"), [1, 2**60], {"x": float("-inf")},
     0.0, -0.0, 3.0],
)
def test_values_the_inline_path_cannot_hold_are_escaped_and_come_back(value):
    stored = inline(encode(value, key="k", task_id="t"))
    assert set(stored) == {ESCAPE_KEY} and isinstance(stored[ESCAPE_KEY], str)
    assert not is_reference(stored)
    back = decode_inline(stored)
    assert back == value or (value != value and back != back)


def test_plain_values_stay_plain():
    assert inline(encode({"rows": [1, 2]}, key="k", task_id="t")) == {"rows": [1, 2]}
    assert decode_bytes(encode((1, 2), key="k", task_id="t").data) == (1, 2)


def test_unserialisable_value_names_key_task_and_type():
    with pytest.raises(XComValueError, match="task 't' pushed a value for XCom key 'k'.*builtins.object"):
        encode(object(), key="k", task_id="t")


def test_reference_round_trips_and_is_bounded():
    ref = Reference("s3://aws_default@bucket/xcom", object_name("d", "r", "t", -1, "k"), "ab" * 32, 123, "gzip")
    assert Reference.parse(ref.to_uri()) == ref
    with pytest.raises(XComStoreError, match="limit 1024"):
        Reference("s3://c@b/" + "p" * 1000, "values/x", "0" * 64, 1, "").to_uri()
    with pytest.raises(XComStoreError, match="malformed xcomsim reference"):
        Reference.parse("xcomsim+s3://c@b/values/x?size=1")


def test_object_names_are_fixed_per_coordinate_and_distinct_across_coordinates():
    assert object_name("d", "r", "t", 0, "k") == object_name("d", "r", "t", 0, "k")
    names = {object_name("d", "r", "t", m, k) for m in (-1, 0, 1) for k in ("k", "k2")}
    assert len(names) == 6
    assert object_name("d", "r", "t", 0, "k", kind="guards").startswith("guards/")
