"""What landed: the test's ``xcom`` rows and every object of its S3 bucket and Redis, as an Observation."""

from __future__ import annotations

from typing import Any

from xcomsim.checks import Observation


def store_sizes(env: Any) -> dict[str, int]:
    """Every object of the test's stores (``s3://bucket/key``, ``redis:key``) and its size in bytes."""
    sizes = {}
    paginator = env.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=env.bucket):
        for obj in page.get("Contents", []):
            sizes[f"s3://{env.bucket}/{obj['Key']}"] = obj["Size"]
    for key in env.redis.keys("*"):
        try:
            sizes[f"redis:{key.decode()}"] = env.redis.strlen(key)
        except Exception:  # not a string value: count it, size unknown
            sizes[f"redis:{key.decode()}"] = 0
    return sizes


def store_objects(env: Any) -> set[str]:
    """Every object in the test's S3 bucket and every key in its Redis."""
    return set(store_sizes(env))


def observe(env: Any, run_id: str | None = None, **fields: Any) -> Observation:
    """The rows (of one DAG run, or all) and the stores as they are now, plus any other Observation fields."""
    rows = [row for row in env.xcom_rows() if run_id is None or row["run_id"] == run_id]
    return Observation(rows=rows, objects=store_sizes(env), bucket=env.bucket, **fields)


def stored_values(env: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    """Key -> the backend's deserialised value, for every row of the run (``runner.read_xcoms``)."""
    from sqlalchemy.orm import Session

    from xcomsim.runner import read_xcoms

    with Session(env.engine) as session:
        records = read_xcoms(session, env.backend, dag_id, run_id)
    broken = [f"{r.key}: {r.error}" for r in records if r.error]
    if broken:
        raise AssertionError(f"the backend cannot read back what it stored: {broken}")
    return {r.key: r.value for r in records}
