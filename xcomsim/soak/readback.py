"""The end state of a soak, read the way a worker would: rows, values through the backend, objects, tries.

Run as ``python -m xcomsim.soak.readback SPEC.json OUT.json`` in a process with
the deployment's environment (its Airflow configuration, connections and XCom
backend), so the soak's own process never loads Airflow's configuration. The
spec names the soak's DAG ids and whether to run ``xcomsim gc`` first.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def read(spec: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from airflow.sdk.execution_time.comms import XComResult
    from airflow.sdk.execution_time.xcom import resolve_xcom_backend

    from xcomsim.checks.values import refers_to
    from xcomsim.soak import probe

    backend = resolve_xcom_backend()
    out: dict[str, Any] = {"gc": None, "rows": [], "task_instances": [], "objects": {}, "xcom_table_bytes": None,
                           "backend": f"{backend.__module__}.{backend.__qualname__}", "claims": _claims(backend)}
    if spec.get("gc"):
        out["gc"] = _gc(spec["db_url"], spec.get("gc_grace"))
    if spec.get("only_gc"):
        return out
    engine = create_engine(spec["db_url"])
    ids = list(spec["dag_ids"])
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT dag_id, run_id, task_id, map_index, key, value FROM xcom "
                                 "WHERE dag_id = ANY(:ids)"), {"ids": ids}).all()  # fmt: skip
        for dag_id, run_id, task_id, map_index, key, stored in rows:
            entry = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "key": key,
                     "value": stored}  # fmt: skip
            try:
                value = backend.deserialize_value(XComResult(key=key, value=stored))
                entry["digest"] = probe.digest(value)
                entry["try"] = value.get("try") if isinstance(value, dict) else None
            except Exception as exc:  # noqa: BLE001 - a row that cannot be read is a finding, kept per row
                entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            out["rows"].append(entry)
        tis = conn.execute(text(
            "SELECT dag_id, run_id, task_id, map_index, state, try_number, start_date, end_date, duration, "
            "hostname FROM task_instance WHERE dag_id = ANY(:ids)"), {"ids": ids}).all()  # fmt: skip
        for dag_id, run_id, task_id, map_index, state, try_number, start, end, duration, host in tis:
            out["task_instances"].append({
                "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "state": state,
                "try_number": try_number, "start": start.timestamp() if start else None,
                "end": end.timestamp() if end else None, "duration": duration, "hostname": host})  # fmt: skip
        out["xcom_table_bytes"] = conn.execute(text("SELECT pg_total_relation_size('xcom')")).scalar()
        out["xcom_value_bytes"] = conn.execute(text(
            "SELECT coalesce(sum(pg_column_size(value)), 0) FROM xcom WHERE dag_id = ANY(:ids)"), {"ids": ids}).scalar()  # fmt: skip
        others = conn.execute(text("SELECT value FROM xcom WHERE NOT dag_id = ANY(:ids)"), {"ids": ids}).scalars().all()
    engine.dispose()
    out["objects"] = _objects()
    # Objects other DAGs' rows reference (an earlier phase of a model check, the deployment's own DAGs): not this
    # soak's to judge
    out["objects_elsewhere"] = sorted(n for n in out["objects"] if any(refers_to(v, n) for v in others))
    return out


def _claims(backend: type) -> dict[str, Any]:
    """What the backend claims, as the kit reads it; the offload threshold as this deployment configures it."""
    from airflow.sdk.configuration import conf

    from xcomsim.backend import ExclusiveXCom
    from xcomsim.conformance.capabilities import declared

    capabilities = declared(backend)
    reference = issubclass(backend, ExclusiveXCom)
    threshold = None
    if capabilities.offload is not None:
        threshold = capabilities.offload[1]
        if reference:
            threshold = int(conf.get("xcomsim", "xcom_objectstorage_threshold", fallback=str(threshold)))
    return {"push_once": bool(capabilities.push_once), "scoping": capabilities.scoping is not None,
            "claims": capabilities.claim_store is not None, "offload_threshold": threshold, "sweeper": reference,
            "retry_replaces_failed_try": bool(capabilities.retry_replaces_failed_try)}


def _objects() -> dict[str, int]:
    """Every object of the backend's value stores, named like the kit names them: ``s3://bucket/key`` (the whole
    S3 prefix), and ``redis:key`` (``redis/N:key`` for DB N) for the values a Redis store holds."""
    from xcomsim.backend import config
    from xcomsim.backend.errors import ExclusiveXComError
    from xcomsim.backend.stores import StoreLocation, open_store

    try:
        paths = config.load().value_paths
    except ExclusiveXComError:
        return {}
    found = {}
    for path in paths:
        if path.startswith("s3://"):
            location = StoreLocation.parse(path)
            client = open_store(path)._client()  # noqa: SLF001 - the store's own client, to list sizes as S3 has them
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    found[f"s3://{location.bucket}/{obj['Key']}"] = obj["Size"]
        elif path.startswith("redis://"):
            store = open_store(path)
            client = store._client()  # noqa: SLF001
            db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
            prefix = "redis:" if db == 0 else f"redis/{db}:"
            for key in client.scan_iter(match=store._key("values/") + "*"):  # noqa: SLF001
                found[prefix + key.decode()] = int(client.strlen(key))
    return found


def _gc(db_url: str, grace: float | None) -> dict[str, Any] | None:
    """The sweeper the configured backend declares (as the kit finds it), run as its ``gc`` would be."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time.xcom import resolve_xcom_backend
    from sqlalchemy import create_engine

    from xcomsim.conformance.liveness import declared_sweeper, deleted_names, reference_sweeper

    backend = resolve_xcom_backend()
    sweeper = declared_sweeper(backend)
    if sweeper is None:
        return None
    began = time.time()
    if sweeper is reference_sweeper:  # the backend's own sweep (a mutant may override it), with the grace asked
        reports = backend.sweep_all(db_url, dry_run=False, grace_seconds=grace)
    else:
        engine = create_engine(db_url)
        reports = [sweeper(SimpleNamespace(backend=backend, engine=engine))]
        engine.dispose()
    deleted = [name for report in reports for name in deleted_names(report)]
    return {"began": began, "ended": time.time(), "deleted": deleted}


if __name__ == "__main__":
    result = read(json.loads(Path(sys.argv[1]).read_text()))
    Path(sys.argv[2]).write_text(json.dumps(result, default=str))
