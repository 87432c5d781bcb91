"""Push, pull and claim latency through a backend, the way task code calls it.

A probe starts one real task instance (a DAG run, its row moved to running
through the Execution API) and acts as it: ``push`` is ``XCom.set`` and ``pull``
is ``XCom.get_one`` on the installed backend, so a timing includes the backend's
own work, the Execution API round trip to the metadata DB, and the store it
offloads to. No DAG-run loop is around it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from xcomsim.settings import AIRFLOW_BACKEND, DEFAULT_BACKEND

KiB = 1024
MiB = 1024 * KiB
PAYLOAD_SIZES = {"1KiB": KiB, "64KiB": 64 * KiB, "1MiB": MiB, "16MiB": 16 * MiB}

# Offloading setups keep values under 1 KiB inline; every payload size above is offloaded.
OFFLOAD_THRESHOLD = KiB
PROBE_DAG_ID = "xcomsim_bench_probe"


@dataclass(frozen=True)
class BackendSetup:
    """One backend configuration to measure.

    ``name`` is stable (test ids, JSON keys); ``store`` says where values live:
    ``db`` (the xcom row), ``s3``, ``redis``, or ``custom`` (a backend we know nothing of).
    """

    name: str
    label: str
    backend: str
    store: str
    config: Mapping[str, object] = field(default_factory=dict)


def standard_setups(custom_backend: str | None = None) -> list[BackendSetup]:
    """Airflow's DB backend, ExclusiveXCom inline, offloading to S3 and to Redis, and ``custom_backend``."""
    setups = [
        BackendSetup("airflow-db", "Airflow BaseXCom", AIRFLOW_BACKEND, "db"),
        BackendSetup("exclusive-inline", "ExclusiveXCom inline", DEFAULT_BACKEND, "db",
                     {"xcomsim.xcom_objectstorage_threshold": -1}),
        BackendSetup("exclusive-s3", "ExclusiveXCom -> S3", DEFAULT_BACKEND, "s3",
                     {"xcomsim.xcom_objectstorage_threshold": OFFLOAD_THRESHOLD}),
        BackendSetup("exclusive-redis", "ExclusiveXCom -> Redis", DEFAULT_BACKEND, "redis",
                     {"xcomsim.xcom_objectstorage_threshold": OFFLOAD_THRESHOLD,
                      "xcomsim.xcom_objectstorage_path": "redis://redis_default/xcom"}),
    ]  # fmt: skip
    if custom_backend and custom_backend not in (AIRFLOW_BACKEND, DEFAULT_BACKEND):
        setups.append(BackendSetup("custom", custom_backend, custom_backend, "custom"))
    return setups


def payload(size: int) -> str:
    """A string whose serialised JSON (quotes included) is exactly ``size`` bytes."""
    if size < 2:
        raise ValueError(f"a payload needs at least 2 bytes (its JSON quotes), got {size}")
    return "x" * (size - 2)


def probe_dag(dag_id: str = PROBE_DAG_ID, tasks: int = 1) -> Any:
    """A DAG of ``tasks`` independent tasks ``w0``, ``w1``, ... whose instances probes act as."""
    from datetime import datetime

    from airflow.sdk import DAG, task

    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None) as dag:
        for index in range(tasks):

            @task(task_id=f"w{index}")
            def worker() -> None:
                return None

            worker()
    return dag


class XComProbe:
    """Acts as one running task instance; every ``push`` uses a new key (push-once backends refuse a second)."""

    def __init__(self, backend: type, handle: Any):
        self.backend = backend
        self.handle = handle
        self._keys = itertools.count()

    def new_key(self) -> str:
        return f"bench_{next(self._keys)}"

    def _coordinate(self) -> dict[str, Any]:
        h = self.handle
        return {"dag_id": h.dag.dag_id, "task_id": h.task_id, "run_id": h.run_id, "map_index": h.map_index}

    def push(self, key: str, value: Any) -> None:
        with self.handle.active():
            self.backend.set(key, value, **self._coordinate())

    def pull(self, key: str) -> Any:
        with self.handle.active():
            return self.backend.get_one(key=key, **self._coordinate())

    def pushed(self, value: Any) -> str:
        """Push ``value`` under a new key, check it reads back, and return the key."""
        key = self.new_key()
        self.push(key, value)
        if self.pull(key) != value:
            raise AssertionError(f"{self.backend.__name__} did not return the {len(str(value))}-char value pushed")
        return key


@contextlib.contextmanager
def probes(env: Any, count: int = 1, dag: Any = None) -> Iterator[list[XComProbe]]:
    """``count`` probes in ``env``, each a task instance of one new DAG run, usable from any thread."""
    from xcomsim.task_context import start_task_instances, thread_local_task_state

    dag = dag if dag is not None else probe_dag(tasks=count)
    with thread_local_task_state():
        handles = start_task_instances(dag, [(f"w{i}", -1) for i in range(count)])
        yield [XComProbe(env.backend, handle) for handle in handles]


def claim_stores(env: Any) -> dict[str, Any]:
    """The reference claim stores on this environment: ``sql`` (its metadata DB) and ``redis``."""
    from xcomsim.backend.claims import RedisClaimStore, SqlClaimStore

    return {"sql": SqlClaimStore(env.engine), "redis": RedisClaimStore(env.redis)}


def fresh_claim_ids(prefix: str = "bench") -> Iterator[tuple[str, str]]:
    """``(claim_id, worker_id)`` pairs, each claim new: an uncontended ``try_claim`` is what is timed."""
    return ((f"{prefix}-{n}", "w0") for n in itertools.count())
