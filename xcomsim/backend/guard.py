"""The push-once guard: one marker object per XCom coordinate, taken atomically before anything is written."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from xcomsim.backend import codec
from xcomsim.backend.config import BackendConfig, load
from xcomsim.backend.errors import XComOverwriteError
from xcomsim.backend.policy import policy_for
from xcomsim.backend.stores import ObjectStore


def retry_replaces(dag_id: str, config: BackendConfig | None = None) -> bool:
    """The DAG's policy's ``retry_replaces``, else the configuration's (``config``: the one the caller
    already read for this operation; a read is ~0.1 ms, seven ``conf.get``)."""
    policy = policy_for(dag_id)
    if policy is not None:
        return policy.retry_replaces
    return (config or load()).retry_replaces


class Guard:
    """The push-once marker of one coordinate: created atomically, never check-then-act.

    It records the task instance, try and run that took it, and when. A guard
    whose coordinate has no row and that was left by a try that is over (one that
    crashed between guard and row, or whose release failed in a store outage; or
    a deleted run whose ``run_id`` was triggered again) is taken over by
    compare-and-swap; see ``_may_take_over`` for when a try counts as over.
    """

    def __init__(self, store: ObjectStore, dag_id: str, run_id: str, task_id: str, map_index: int, key: str):
        self.store = store
        self.coordinate = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "key": key}
        self.name = codec.object_name(dag_id, run_id, task_id, map_index, key, kind="guards")
        self._previous: tuple[bytes, str] | None = None
        self._held = False

    def _body(self, try_number: int, ti_id: str, run: str) -> bytes:
        holder = {"try_number": try_number, "ti_id": ti_id, "run": run, "created_at": time.time()}
        return json.dumps({**self.coordinate, **holder}).encode()

    def acquire(self, try_number: int, retry_replaces: bool, *, ti_id: str = "", run: str = "",
                lease_seconds: float = 0.0, row_exists: Callable[[], bool] | None = None) -> None:  # fmt: skip
        body = self._body(try_number, ti_id, run)
        if self.store.create(self.name, body):
            self._held = True
            return
        existing = self.store.read(self.name)
        if existing is None and self.store.create(self.name, body):  # forgotten in between
            self._held = True
            return
        if existing is not None and self._may_take_over(json.loads(existing[0]), try_number, retry_replaces,
                                                        ti_id, run, lease_seconds, row_exists):  # fmt: skip
            if self.store.swap(self.name, existing[1], body):
                self._previous, self._held = existing, True
                return
        c = self.coordinate
        where = f"map_index {c['map_index']} " if c["map_index"] >= 0 else ""
        raise XComOverwriteError(
            f"XCom key {c['key']!r} of DAG {c['dag_id']!r}, task {c['task_id']!r} {where}in run "
            f"{c['run_id']!r} was already pushed; push-once keeps the first value"
            + ("" if retry_replaces else " (an XComPolicy with retry_replaces=True lets a later try replace it)")
        )

    @staticmethod
    def _may_take_over(earlier: dict[str, Any], try_number: int, retry_replaces: bool, ti_id: str, run: str,
                       lease_seconds: float, row_exists: Callable[[], bool] | None) -> bool:  # fmt: skip
        """Whether a guard someone else holds belongs to a try that is over and left no row.

        Never the same try (a push of it may be in flight). Another run of the
        same run_id (deleted and triggered again): at once. An earlier try of this
        run: once the guard is older than the lease, since until then that try may
        still be pushing (a zombie); a push that outlives the lease undoes itself.
        """
        earlier_try = earlier.get("try_number", 0)
        if (earlier.get("ti_id", ""), earlier_try) == (ti_id, try_number):
            return False
        if retry_replaces and earlier_try < try_number:
            return True
        other_run = bool(run and earlier.get("run") and earlier["run"] != run)
        aged = time.time() - float(earlier.get("created_at", 0)) >= lease_seconds
        return (other_run or aged) and row_exists is not None and not row_exists()

    def forget(self) -> None:
        """Remove the guard of a deleted XCom (only when a later try may replace it anyway)."""
        self.store.delete(self.name)

    def release(self) -> None:
        """Undo ``acquire`` after a failed write, so nothing is left half-done."""
        if not self._held:
            return
        if self._previous is None:
            self.store.delete(self.name)
        else:
            self.store.put(self.name, self._previous[0])
        self._held = False


def row_exists(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> bool:
    """Whether the ``xcom`` table has a row for the coordinate (asked through the supervisor)."""
    from airflow.sdk.execution_time.comms import GetXCom, GetXComCount, XComCountResponse, XComResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    row = SUPERVISOR_COMMS.send(GetXCom(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index))
    if isinstance(row, XComResult) and row.value is not None:
        return True
    # A stored None reads like no row: count rows of the task's key (any map index); none means none.
    count = SUPERVISOR_COMMS.send(GetXComCount(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id))
    return not (isinstance(count, XComCountResponse) and count.len == 0)
