"""Broken XCom backends, written as a user would: BaseXCom plus redis-py or boto3, nothing of xcomsim."""

from __future__ import annotations

from typing import Any

from airflow.sdk.bases.xcom import BaseXCom


def _redis() -> Any:
    import redis

    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection("redis_default")
    return redis.Redis(host=conn.host, port=conn.port or 6379, db=int(conn.extra_dejson.get("db", 0)))


class ReadThenWriteGuardXCom(BaseXCom):
    """Push-once by GET-then-SET of a guard key: two pushers can both find it missing."""

    xcomsim_contract = {"push_once": True}  # claims it, as the backend it stands in for does

    @classmethod
    def set(cls, key: str, value: Any, *, dag_id: str, task_id: str, run_id: str, map_index: int = -1,
            **kwargs: Any) -> None:  # fmt: skip
        client = _redis()
        guard = f"guard:{dag_id}:{run_id}:{task_id}:{map_index}:{key}"
        if client.get(guard) is not None:
            raise ValueError(f"XCom {key!r} was already pushed")
        client.set(guard, "1")
        super().set(key, value, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, **kwargs)


class OverwriteAllowedXCom(BaseXCom):
    """No guard at all (Airflow's own behaviour): a second push silently replaces the first."""

    xcomsim_contract = {"push_once": True}  # claims it, as the backend it stands in for does


class TupleToListXCom(BaseXCom):
    """Stores values as plain JSON instead of Airflow's serde: tuples come back as lists."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        import json

        return json.loads(json.dumps(value, default=str))

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        return result.value


class _S3OffloadMutant(BaseXCom):
    """Offloads to S3 the plain way: boto3, ``s3://bucket/mutant/...`` in the row. Correct, but for one flaw."""

    xcomsim_contract = {"offload": ({}, 1000)}  # MUTANT_THRESHOLD, 1000 unless set

    @staticmethod
    def _bucket() -> str:
        import os

        return os.environ.get("MUTANT_BUCKET", "xcomsim")

    @staticmethod
    def _threshold() -> int:
        import os

        return int(os.environ.get("MUTANT_THRESHOLD", "1000"))

    @staticmethod
    def _serialised(value: Any) -> bytes:
        import json

        from xcomsim.compat.names import serialize

        return json.dumps(serialize(value), separators=(",", ":")).encode()

    @classmethod
    def _size(cls, value: Any) -> int:
        return len(cls._serialised(value))

    @classmethod
    def _offloads(cls, size: int) -> bool:
        return size >= cls._threshold()

    @classmethod
    def _upload(cls, name: str, data: bytes) -> None:
        import boto3

        boto3.client("s3").put_object(Bucket=cls._bucket(), Key=name, Body=data)

    @classmethod
    def serialize_value(cls, value: Any, *, key: str | None = None, task_id: str | None = None,
                        dag_id: str | None = None, run_id: str | None = None,
                        map_index: int | None = None) -> Any:  # type: ignore[override]  # fmt: skip
        import uuid

        from xcomsim.compat.names import serialize

        if cls._offloads(cls._size(value)):
            name = f"mutant/{uuid.uuid4()}"
            cls._upload(name, cls._serialised(value))
            return f"s3://{cls._bucket()}/{name}"
        return serialize(value)

    @classmethod
    def deserialize_value(cls, result: Any) -> Any:  # type: ignore[override]
        import json

        import boto3

        from xcomsim.compat.names import deserialize

        stored = result.value
        prefix = f"s3://{cls._bucket()}/"
        if isinstance(stored, str) and stored.startswith(prefix):
            body = boto3.client("s3").get_object(Bucket=cls._bucket(), Key=stored[len(prefix):])["Body"].read()
            return deserialize(json.loads(body))
        return deserialize(stored)


class ThresholdOffByOneXCom(_S3OffloadMutant):
    """Offloads only strictly above the threshold: a value of exactly ``threshold`` bytes stays inline."""

    @classmethod
    def _offloads(cls, size: int) -> bool:
        return size > cls._threshold()  # the bug: should be >=


class SizeBeforeSerialisationXCom(_S3OffloadMutant):
    """Measures the value as text before serialising it: quotes and escapes are not counted."""

    @classmethod
    def _size(cls, value: Any) -> int:
        return len(str(value).encode())  # the bug: the stored form is the serialised JSON


class ReferenceBeforeObjectXCom(_S3OffloadMutant):
    """Writes the row (the reference) first and uploads the object after: a crash between leaves it dangling."""

    @classmethod
    def set(cls, key: str, value: Any, *, dag_id: str, task_id: str, run_id: str, map_index: int = -1,
            **kwargs: Any) -> None:  # fmt: skip
        data = cls._serialised(value)
        if not cls._offloads(len(data)):
            super().set(key, value, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index, **kwargs)
            return
        name = f"mutant/{dag_id}/{run_id}/{task_id}/{map_index}/{key}"
        BaseXCom.set(key, f"s3://{cls._bucket()}/{name}", dag_id=dag_id, task_id=task_id, run_id=run_id,
                     map_index=map_index, **kwargs)  # fmt: skip
        cls._upload(name, data)  # the bug: after the row
