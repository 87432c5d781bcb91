"""Backends broken along one value family each: what the kit's round trips and discovery must reach.

Written as users write them (BaseXCom, boto3, Airflow's serde), each correct for the
values a four-item list and a padded string exercise, and wrong for one dimension:
an item count, a type, a nesting depth, a marker key of its own, its own reference
shape, a size past 100,000 bytes, a threshold past 1 MiB, a map index, a row Airflow
wrote itself.
"""

from __future__ import annotations

import json
import os
import uuid
from decimal import Decimal
from typing import Any

from airflow.sdk.bases.xcom import BaseXCom

from xcomsim.compat.names import deserialize, serialize  # airflow.sdk.serde from 3.2, airflow.serialization.serde in 3.1


def _bucket() -> str:
    return os.environ.get("MUTANT_BUCKET", "xcomsim")


def _s3() -> Any:
    import boto3

    return boto3.client("s3")


def _put(name: str, body: bytes) -> None:
    _s3().put_object(Bucket=_bucket(), Key=name, Body=body)


def _get(name: str, **kwargs: Any) -> bytes:
    return _s3().get_object(Bucket=_bucket(), Key=name, **kwargs)["Body"].read()


def _data(value: Any) -> bytes:
    return json.dumps(serialize(value), separators=(",", ":")).encode()


def _offloaded(value: Any, name: str) -> bool:
    """Upload a value of 1000 bytes and more (its serde JSON) to ``name``: whether it was (else it stays inline)."""
    data = _data(value)
    if len(data) < 1000:
        return False
    _put(name, data)
    return True


class CountOffloadXCom(BaseXCom):
    """Lists and tuples of more than 50 items go to S3 as plain JSON: a long tuple comes back a list."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(value, (list, tuple)) and len(value) > 50:
            name = f"mutant/rows/{uuid.uuid4().hex}.json"
            _put(name, json.dumps(list(value), default=str).encode())
            return {"rows_at": name}
        return BaseXCom.serialize_value(value)

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        stored = result.value
        if isinstance(stored, dict) and set(stored) == {"rows_at"}:
            return json.loads(_get(stored["rows_at"]))
        return BaseXCom.deserialize_value(result)

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        if isinstance(xcom.value, dict) and set(xcom.value) == {"rows_at"}:
            _s3().delete_object(Bucket=_bucket(), Key=xcom.value["rows_at"])


def _no_decimals(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _no_decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_decimals(v) for v in value]
    return value


class DecimalAsFloatXCom(BaseXCom):
    """Turns ``Decimal`` into ``float`` before storing (for a JSON column of its own): 0.0100 comes back 0.01."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return BaseXCom.serialize_value(_no_decimals(value))


def _capped(value: Any, depth: int = 0) -> Any:
    if depth >= 20 and isinstance(value, (list, dict, tuple)):
        return repr(value)
    if isinstance(value, list):
        return [_capped(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _capped(v, depth + 1) for k, v in value.items()}
    return value


class DepthCappedXCom(BaseXCom):
    """Stores what is nested deeper than 20 levels as its repr (to keep its search index flat)."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return BaseXCom.serialize_value(_capped(value))


SNAPSHOT_KEY = "__xcom_snapshot__"


class MarkerKeyXCom(BaseXCom):
    """A dict with a truthy ``__xcom_snapshot__`` key is taken for one of its own snapshots on the way back."""

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        value = BaseXCom.deserialize_value(result)
        if isinstance(value, dict) and value.get(SNAPSHOT_KEY):
            return {"snapshot": value["payload"]}  # its own object; KeyError for anyone else's dict
        return value


class ReferenceDictXCom(BaseXCom):
    """Offloads values of 1000 bytes and more; its row is ``{"__xcom_ref": name}``, and any such dict is fetched."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"mutant/refs/{uuid.uuid4().hex}"
        return {"__xcom_ref": name} if _offloaded(value, name) else serialize(value)

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        stored = result.value
        if isinstance(stored, dict) and "__xcom_ref" in stored:
            return deserialize(json.loads(_get(stored["__xcom_ref"])))
        return deserialize(stored)


class HundredKiloReaderXCom(BaseXCom):
    """Offloads values of 1000 bytes and more; reads back only their first 100,000 bytes (one ranged GET)."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"mutant/ranged/{uuid.uuid4().hex}"
        return f"s3://{_bucket()}/{name}" if _offloaded(value, name) else serialize(value)

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        stored = result.value
        prefix = f"s3://{_bucket()}/"
        if isinstance(stored, str) and stored.startswith(prefix):
            body = _get(stored[len(prefix):], Range="bytes=0-99999")
            return deserialize(json.loads(body))
        return deserialize(stored)

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        prefix = f"s3://{_bucket()}/"
        if isinstance(xcom.value, str) and xcom.value.startswith(prefix):
            _s3().delete_object(Bucket=_bucket(), Key=xcom.value[len(prefix):])


class OneMiBTutorialXCom(BaseXCom):
    """The tutorial's ``len(data) > 1048576``: offloads past 1 MiB to a fresh object and never deletes it."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        data = _data(value)
        if len(data) > 1048576:
            name = f"mutant/big/{uuid.uuid4()}.json"
            _put(name, data)
            return f"s3://{_bucket()}/{name}"
        return serialize(value)

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        stored = result.value
        prefix = f"s3://{_bucket()}/mutant/big/"
        if isinstance(stored, str) and stored.startswith(prefix):
            return deserialize(json.loads(_get(stored.removeprefix(f"s3://{_bucket()}/"))))
        return deserialize(stored)


class MapIndexlessXCom(BaseXCom):
    """Offloads values of 1000 bytes and more to ``<dag>/<run>/<task>/<key>``: mapped instances share one object."""

    @staticmethod
    def serialize_value(value: Any, *, key: str | None = None, task_id: str | None = None,
                        dag_id: str | None = None, run_id: str | None = None,
                        map_index: int | None = None, **kwargs: Any) -> Any:  # type: ignore[override]  # fmt: skip
        name = f"mutant/named/{dag_id}/{run_id}/{task_id}/{key}.json"  # the bug: no map_index
        return {"named": name} if _offloaded(value, name) else serialize(value)

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        stored = result.value
        if isinstance(stored, dict) and set(stored) == {"named"}:
            return deserialize(json.loads(_get(stored["named"])))
        return deserialize(stored)

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        if isinstance(xcom.value, dict) and set(xcom.value) == {"named"}:
            _s3().delete_object(Bucket=_bucket(), Key=xcom.value["named"])


class EveryRowIsAReferenceXCom(BaseXCom):
    """Offloads every value; reading takes every row for an object name, Airflow's own link rows included."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"mutant/all/{uuid.uuid4().hex}"
        _put(name, _data(value))
        return name

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        return deserialize(json.loads(_get(result.value)))

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        if isinstance(xcom.value, str) and xcom.value.startswith("mutant/all/"):
            _s3().delete_object(Bucket=_bucket(), Key=xcom.value)
