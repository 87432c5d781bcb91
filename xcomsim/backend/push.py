"""The push path: every check, the guard, the object, then the row, and nothing half-written.

A push is checked (coordinate, caller, bookkeeping, scope, key, value), takes the
coordinate's push-once guard, stores an offloaded value's object, and only then
asks the supervisor to write the ``xcom`` row. Whatever fails after the guard is
taken undoes what this push wrote; a lost reply after the row committed is told
apart from a row that never landed by reading the row back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from xcomsim.backend import codec
from xcomsim.backend.caller import check_key, run_identity
from xcomsim.backend.config import BackendConfig, load
from xcomsim.backend.errors import XComStoreError
from xcomsim.backend.guard import Guard, retry_replaces, row_exists
from xcomsim.backend.policy import AIRFLOW_INTERNAL_KEYS
from xcomsim.backend.stores import ObjectStore, open_store

log = logging.getLogger(__name__)


class PushPath:
    """``set``, ``aset`` and ``serialize_value``: the backend's only ways to write."""

    @classmethod
    def _guard_type(cls, *args: Any) -> Guard:
        return Guard(*args)

    @classmethod
    def set(  # type: ignore[override]
        cls,
        key: str,
        value: Any,
        *,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int = -1,
        dag_result: bool = False,
        _mapped_length: int | None = None,
    ) -> None:
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        message, undo = cls._prepare_push(key, value, dag_id, task_id, run_id, map_index, dag_result, _mapped_length)
        undo.within_lease()
        try:
            SUPERVISOR_COMMS.send(message)
        except BaseException as exc:
            if cls._landed_or_undone(message, exc, undo, SUPERVISOR_COMMS.send):
                return
            raise

    @classmethod
    async def aset(  # type: ignore[override]
        cls,
        key: str,
        value: Any,
        *,
        dag_id: str,
        task_id: str,
        run_id: str,
        map_index: int = -1,
        dag_result: bool = False,
        _mapped_length: int | None = None,
    ) -> None:
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        message, undo = cls._prepare_push(key, value, dag_id, task_id, run_id, map_index, dag_result, _mapped_length)
        undo.within_lease()
        try:
            await SUPERVISOR_COMMS.asend(message)
        except BaseException as exc:
            try:
                row: Any = await SUPERVISOR_COMMS.asend(get_row(message))
            except Exception as read_error:
                row = read_error
            if cls._landed_or_undone(message, exc, undo, lambda _: raise_if_error(row)):
                return
            raise

    @classmethod
    def _prepare_push(cls, key, value, dag_id, task_id, run_id, map_index, dag_result, mapped_length):
        """The row message and the undo of what was written for it; the message is built (and so validated
        by Airflow's ``SetXCom`` model) before the guard is taken, so its refusal leaves nothing."""
        from airflow.sdk.execution_time.comms import SetXCom

        def message(stored: Any, index: int) -> Any:
            return SetXCom(key=key, value=stored, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=index,
                           dag_result=dag_result, mapped_length=mapped_length)  # fmt: skip

        _, undo, built = cls._write(key, value, dag_id, task_id, run_id, map_index, message)
        return built, undo

    @classmethod
    def _landed_or_undone(cls, message: Any, exc: BaseException, undo: Any, read: Any) -> bool:
        """The row write raised: undo only what is known not to have landed.

        The reply can be lost after the row committed. Then deleting the object
        and releasing the guard would leave a row pointing at nothing, so the row
        is read back first: if it holds this push's value the push is kept (and
        an ordinary error is not raised: the value is stored); if the read fails
        too, nothing is undone (a guard without a row is reconciled by the next
        try, an object without a row is collected by ``xcomsim gc``).
        Returns True when the push landed and the error is not to be raised.
        """
        from airflow.sdk.execution_time.comms import XComResult

        try:
            row = read(get_row(message))
        except Exception:
            log.warning("XCom %r: the row write failed and the row cannot be read back; nothing undone", message.key)
            return False
        if isinstance(row, XComResult) and row.value is not None and row.value == message.value:
            log.warning("XCom %r: the reply to the row write was lost after the row committed: %s", message.key, exc)
            return isinstance(exc, Exception)
        undo()
        return False

    @classmethod
    def _write(cls, key: Any, value: Any, dag_id: Any, task_id: Any, run_id: Any, map_index: Any,
               message: Callable[[Any, int], Any] | None = None) -> tuple[Any, Any, Any]:  # fmt: skip
        """Every check, the guard and the object: the one way anything is written.

        Returns (stored form, undo, ``message(stored form, map index)``). Everything that can refuse runs
        before the guard is taken; whatever fails after it undoes this push's object and guard.
        """
        config = load()
        cls._check_coordinate(dag_id, run_id, task_id, key)
        map_index = cls._map_index(map_index, task_id, key)
        caller = cls._check_pusher(dag_id, task_id, run_id, map_index, key)
        if key in AIRFLOW_INTERNAL_KEYS:
            cls._check_bookkeeping(caller, key, value)
        cls._check_push_scope(config, dag_id, task_id, key)
        check_key(key, task_id)
        encoded = codec.encode(value, key=key, task_id=task_id)
        store = open_store(config.path)
        stored, upload = plan_value(store, config, encoded, dag_id, run_id, task_id, map_index, key)
        built = None if message is None else message(stored, map_index)
        guard = cls._guard_type(store, dag_id, run_id, task_id, map_index, key)
        if key not in AIRFLOW_INTERNAL_KEYS:  # Airflow rewrites its own bookkeeping keys
            guard.acquire(int(caller.try_number or 0), retry_replaces(dag_id, config), ti_id=str(caller.id),
                          run=run_identity(caller), lease_seconds=config.guard_lease_seconds,
                          row_exists=lambda: row_exists(dag_id, run_id, task_id, map_index, key))  # fmt: skip
        try:
            if upload is not None:
                store.put(*upload)
        except BaseException:
            guard.release()
            raise
        return stored, Undo(store, stored, guard, config.guard_lease_seconds), built

    @classmethod
    def serialize_value(  # type: ignore[override]
        cls,
        value: Any,
        *,
        key: str | None = None,
        task_id: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> Any:
        """The stored form (inline JSON-able value, or a reference after offloading).

        Public, so it is a write path like ``set``: the same coordinate, identity
        and scope checks and the push-once guard; the caller writes the row.
        """
        stored, _, _ = cls._write(key, value, dag_id, task_id, run_id, map_index)
        return stored


class Undo:
    """Undoes one push (its object, its guard); ``within_lease`` fences a push that took too long.

    A later try may take over a guard without a row once it is older than the
    guard lease, so a push must not write its row after that: it is undone
    instead, and the later try's value is the one stored.
    """

    def __init__(self, store: ObjectStore, stored: Any, guard: Guard, lease_seconds: float):
        self.store, self.stored, self.guard, self.lease_seconds = store, stored, guard, lease_seconds
        self.started = time.monotonic()

    def __call__(self) -> None:
        if codec.is_reference(self.stored):
            self.store.delete(codec.Reference.parse(self.stored).name)
        self.guard.release()

    def within_lease(self) -> None:
        took = time.monotonic() - self.started
        if self.lease_seconds > 0 and took >= self.lease_seconds:
            self()
            raise XComStoreError(
                f"push of XCom {self.guard.coordinate['key']!r} took {took:.0f}s, longer than the guard lease "
                f"([xcomsim] guard_lease_seconds = {self.lease_seconds:g}); undone, since a later try may now push"
            )


def plan_value(store: ObjectStore, config: BackendConfig, encoded: codec.Encoded, dag_id: str, run_id: str,
               task_id: str, map_index: int, key: str) -> tuple[Any, tuple[str, bytes] | None]:  # fmt: skip
    """The stored form, and the object to upload for it (None: inline), known before anything is written."""
    if not config.offloads(encoded.size):
        return codec.inline(encoded), None
    data = codec.compress(encoded.data, config.compression)
    name = codec.object_name(dag_id, run_id, task_id, map_index, key)
    reference = codec.Reference(str(store.location), name, codec.digest(data), encoded.size, config.compression)
    return reference.to_uri(), (name, data)  # to_uri checks the length


def store_value(store: ObjectStore, config: BackendConfig, encoded: codec.Encoded, dag_id: str, run_id: str,
                task_id: str, map_index: int, key: str) -> Any:  # fmt: skip
    """Plan and upload at once (no guard, no checks): what the unguarded mutants write with."""
    stored, upload = plan_value(store, config, encoded, dag_id, run_id, task_id, map_index, key)
    if upload is not None:
        store.put(*upload)
    return stored


def get_row(message: Any) -> Any:
    from airflow.sdk.execution_time.comms import GetXCom

    return GetXCom(key=message.key, dag_id=message.dag_id, task_id=message.task_id, run_id=message.run_id,
                   map_index=message.map_index)  # fmt: skip


def raise_if_error(found: Any) -> Any:
    if isinstance(found, BaseException):
        raise found
    return found
