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
