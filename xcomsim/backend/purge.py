"""Deleting XComs: Airflow's delete before a retry, purge of a row's object, and the sweeper."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from xcomsim.backend import codec
from xcomsim.backend.caller import airflow_key
from xcomsim.backend.config import load
from xcomsim.backend.errors import XComStoreError
from xcomsim.backend.guard import Guard, Holder, retry_replaces
from xcomsim.backend.policy import AIRFLOW_INTERNAL_KEYS
from xcomsim.backend.pull import value_store
from xcomsim.backend.stores import ObjectStore, open_store

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Row:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    key: str
    value: Any


class Purge:
    """``delete``, ``purge`` and ``sweep``: what removes values, each only the XCom's own."""

    @classmethod
    def sweep(cls, store: Any, engine: Any, *, dry_run: bool = True, grace_seconds: float | None = None) -> Any:
        """``xcomsim gc`` for this backend's store: see ``xcomsim.backend.gc``."""
        from xcomsim.backend.gc import sweep

        return sweep(store, engine, dry_run=dry_run, grace_seconds=grace_seconds)

    @classmethod
    def sweep_all(cls, engine: Any, *, dry_run: bool = True, grace_seconds: float | None = None) -> list[Any]:
        """``sweep`` on every store values live in (``[xcomsim] value_paths``: the guards' store first)."""
        return [cls.sweep(path, engine, dry_run=dry_run, grace_seconds=grace_seconds) for path in load().value_paths]

    @classmethod
    def delete(cls, key: str, task_id: str, dag_id: str, run_id: str, map_index: int | None = None) -> None:
        """Delete a row and its object, unless push-once protects it.

        Deleting is writing: the caller must be the running task instance the
        coordinate belongs to, and may delete only keys it may push (Airflow's own
        keys aside), checked exactly as ``set`` checks a push, before any I/O.
        Airflow calls this when a task is retried, before the new try runs, for
        every key the earlier try pushed. Under push-once the first value must
        stay intact, so it is kept and the new try's push raises
        XComOverwriteError; with ``retry_replaces`` it is deleted so the new try
        can write it again. The object deleted is this coordinate's own, at its
        fixed name, whatever the row says: a row can be written by other code.
        """
        from airflow.sdk.execution_time.comms import DeleteXCom
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        index, caller = cls._check_deleter(key, task_id, dag_id, run_id, map_index)
        if not cls._retry_replaces_for(dag_id, key):
            log.info("push-once: keeping XCom %r of %s.%s for run %s", key, dag_id, task_id, run_id)
            return
        row = cls._get_xcom_db_ref(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=index)
        # The row goes first: if deleting the object fails after it, an orphan is left for gc, never a dangling row.
        SUPERVISOR_COMMS.send(DeleteXCom(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=index))
        cls.purge(Row(dag_id, run_id, task_id, index, key, row.value))
        if key not in AIRFLOW_INTERNAL_KEYS and caller is not None:  # this try may write it afresh; earlier ones not
            Guard(open_store(load().guards), dag_id, run_id, task_id, index, key).forget(Holder.of(caller))

    @classmethod
    def _check_deleter(cls, key: Any, task_id: Any, dag_id: Any, run_id: Any, map_index: Any) -> tuple[int, Any]:
        """The checks ``set`` makes, for a delete: coordinate, map index, caller, push-scope.

        Returns (the map index, the caller)."""
        cls._check_coordinate(dag_id, run_id, task_id, key)
        index = cls._map_index(map_index, task_id, key)
        caller = cls._check_pusher(dag_id, task_id, run_id, index, key, verb="delete")
        if not cls._airflow_key(caller, key):
            cls._check_push_scope(load(), dag_id, task_id, key)
        return index, caller

    @staticmethod
    def _retry_replaces_for(dag_id: str, key: str) -> bool:
        """Whether a retry's delete of ``key`` really deletes (Airflow's own keys always do)."""
        return key in AIRFLOW_INTERNAL_KEYS or retry_replaces(dag_id)

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        """Delete the offloaded object of a row being deleted: only ever one of its coordinate's own objects.

        Public, so checked like ``delete``: the row's coordinate must be the
        running task instance's own. The object is the one the row names only if
        that is one of the coordinate's own names (a try's object, or the fixed
        name of earlier versions); a forged reference must not make a retry delete
        someone else's object, so then the fixed name is deleted. Given a row without its coordinate
        (Airflow's ``XComResult`` carries only key and value), nothing is deleted:
        ``xcomsim gc`` collects what is left. The push-once guard stays: a cleared
        task pushing again is an overwrite unless its policy sets ``retry_replaces``.
        """
        if not codec.is_reference(getattr(xcom, "value", None)):
            return
        coordinate = [getattr(xcom, name, None) for name in ("dag_id", "run_id", "task_id", "map_index", "key")]
        if any(part is None for part in coordinate):
            log.warning("purge: row without its coordinate; its object is left for xcomsim gc")
            return
        dag_id, run_id, task_id, map_index, key = coordinate
        cls._check_coordinate(dag_id, run_id, task_id, key)
        index = cls._map_index(map_index, task_id, key)
        cls._check_pusher(dag_id, task_id, run_id, index, key, verb="purge")
        config = load()
        store: ObjectStore | None = None
        try:
            named = codec.Reference.parse(xcom.value)
            store = value_store(named, config.value_paths)
            own = store is not None and codec.owned_by(named.name, dag_id, run_id, task_id, index, key)
        except XComStoreError:
            own = False
        if own and store is not None:
            store.delete(named.name)
        else:
            open_store(config.path).delete(codec.object_name(dag_id, run_id, task_id, index, key))

