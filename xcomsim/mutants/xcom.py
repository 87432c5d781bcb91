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


class TupleToListXCom(BaseXCom):
    """Stores values as plain JSON instead of Airflow's serde: tuples come back as lists."""

    @staticmethod
    def serialize_value(value: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        import json

        return json.loads(json.dumps(value, default=str))

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        return result.value


class ThresholdOffByOneXCom(BaseXCom):
    """Offloads to S3 only strictly above the threshold: a value of exactly ``threshold`` bytes stays inline."""

    @staticmethod
    def serialize_value(value: Any, *, key: str | None = None, task_id: str | None = None,
                        dag_id: str | None = None, run_id: str | None = None,
                        map_index: int | None = None) -> Any:  # type: ignore[override]  # fmt: skip
        import json
        import os
        import uuid

        import boto3

        from airflow.sdk.serde import serialize

        data = json.dumps(serialize(value), separators=(",", ":")).encode()
        threshold = int(os.environ.get("MUTANT_THRESHOLD", "1000"))
        if len(data) > threshold:  # the bug: should be >=
            name = f"mutant/{uuid.uuid4()}"
            boto3.client("s3").put_object(Bucket=os.environ.get("MUTANT_BUCKET", "xcomsim"), Key=name, Body=data)
            return {"__mutant_ref__": name}
        return serialize(value)

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        import json
        import os

        import boto3

        from airflow.sdk.serde import deserialize

        stored = result.value
        if isinstance(stored, dict) and set(stored) == {"__mutant_ref__"}:
            body = boto3.client("s3").get_object(Bucket=os.environ.get("MUTANT_BUCKET", "xcomsim"),
                                                 Key=stored["__mutant_ref__"])["Body"].read()  # fmt: skip
            return deserialize(json.loads(body))
        return deserialize(stored)
