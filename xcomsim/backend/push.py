"""The push path: every check, the guard, the object, then the row, and nothing half-written.

A push is checked (coordinate, caller, bookkeeping, scope, key, value), takes the
coordinate's push-once guard, stores an offloaded value's object, and only then
asks the supervisor to write the ``xcom`` row. Whatever fails after the guard is
taken undoes what this push wrote; a lost reply after the row committed is told
apart from a row that never landed by reading the row back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from xcomsim.backend import codec
from xcomsim.backend.caller import check_key
from xcomsim.backend.config import BackendConfig, load
from xcomsim.backend.errors import XComFencedError, XComStoreError
from xcomsim.backend.guard import SAME, Guard, Holder, retry_replaces, row_exists
from xcomsim.backend.stores import ObjectStore, open_store

log = logging.getLogger(__name__)


class PushPath:
    """``set``, ``aset`` and ``serialize_value``: the backend's only ways to write."""

    @classmethod
    def _guard_type(cls, *args: Any) -> Guard:
        return Guard(*args)

    @classmethod
    def _object_attempt(cls, holder: Holder) -> int | None:
        """Which try's object a push writes: its own, so two tries in flight never share bytes."""
        return holder.try_number

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

        message, push = cls._prepare_push(key, value, dag_id, task_id, run_id, map_index, dag_result, _mapped_length)
        cls._complete_push(message, push, SUPERVISOR_COMMS.send)

    @classmethod
    def _complete_push(cls, message: Any, push: Pending, send: Callable[[Any], Any]) -> None:
        """The second half of a push, after its guard and object: fence, row, settle."""
        if message is None:
            return  # the identical value is stored already
        push.fence()
        try:
            send(message)
        except BaseException as exc:
            if not cls._landed_or_undone(message, exc, push, send):
                raise
        push.settle(message, send)

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

        message, push = cls._prepare_push(key, value, dag_id, task_id, run_id, map_index, dag_result, _mapped_length)
        if message is None:
            return
        push.fence()
        try:
            await SUPERVISOR_COMMS.asend(message)
        except BaseException as exc:
            try:
                row: Any = await SUPERVISOR_COMMS.asend(get_row(message))
            except Exception as read_error:
                row = read_error
            if not cls._landed_or_undone(message, exc, push, lambda _: raise_if_error(row)):
                raise
        push.settle(message, SUPERVISOR_COMMS.send)

    @classmethod
    def _prepare_push(cls, key, value, dag_id, task_id, run_id, map_index, dag_result, mapped_length):
        """The row message (None: nothing to write) and the push in flight; the message is built (and so
        validated by Airflow's ``SetXCom`` model) before the guard is taken, so its refusal leaves nothing."""
        from airflow.sdk.execution_time.comms import SetXCom

        def message(stored: Any, index: int) -> Any:
            return SetXCom(key=key, value=stored, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=index,
                           dag_result=dag_result, mapped_length=mapped_length)  # fmt: skip

        _, push, built = cls._write(key, value, dag_id, task_id, run_id, map_index, message)
        return (None if push.already_stored else built), push

    @classmethod
    def _landed_or_undone(cls, message: Any, exc: BaseException, undo: Any, read: Any) -> bool:
        """The row write raised: undo only what is known not to have landed.

        The reply can be lost after the row committed. Then deleting the object
        and releasing the guard would leave a row pointing at nothing, so the row
        is read back first: if it holds this push's value the push is kept (and
        an ordinary error is not raised: the value is stored); if the read fails
        too, nothing is undone (a guard without a row is taken over by the next
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
               message: Callable[[Any, int], Any] | None = None) -> tuple[Any, Pending, Any]:  # fmt: skip
        """Every check, the guard and the object: the one way anything is written.

        Returns (stored form, the push in flight, ``message(stored form, map index)``). Everything that can
        refuse runs before the guard is taken; whatever fails after it undoes this push's object and guard.
        """
        config = load()
        cls._check_coordinate(dag_id, run_id, task_id, key)
        map_index = cls._map_index(map_index, task_id, key)
        caller = cls._check_pusher(dag_id, task_id, run_id, map_index, key)
        bookkeeping = cls._airflow_key(caller, key)
        if bookkeeping:  # Airflow's own: checked for its shape, never scoped, never guarded (Airflow rewrites it)
            cls._check_bookkeeping(caller, key, value)
        else:
            cls._check_push_scope(config, dag_id, task_id, key)
        check_key(key, task_id)
        encoded = codec.encode(value, key=key, task_id=task_id)
        store = open_store(config.path if bookkeeping else config.value_path(encoded.size))
        holder = Holder.of(caller)
        stored, upload = plan_value(store, config, encoded, dag_id, run_id, task_id, map_index, key,
                                    attempt=cls._object_attempt(holder), inline=bookkeeping)  # fmt: skip
        built = None if message is None else message(stored, map_index)
        guards = open_store(config.guard_path) if config.guard_path else store
        guard = cls._guard_type(guards, dag_id, run_id, task_id, map_index, key)
        guard.stamps = guard.stamps and not store.keeps_times  # values that keep their own times need no stamp
        push = Pending(store, stored, guard, None if upload is None else upload[0])
        if bookkeeping:
            push.guarded = False
        else:
            outcome, earlier = guard.acquire(
                holder, digest=codec.digest(encoded.data), stored=stored, obj=push.object,
                replaces=retry_replaces(dag_id, config),
                row_exists=lambda: row_exists(dag_id, run_id, task_id, map_index, key))  # fmt: skip
            if outcome == SAME:
                push.already_stored = True
                stored = earlier.get("stored", stored) if earlier else stored
                return stored, push, (None if message is None else message(stored, map_index))
            push.replaced = (earlier or {}).get("object")
            push.replaced_store = _object_store(earlier, config, store)
        try:
            if upload is not None:
                store.put(*upload)
        except BaseException:
            guard.release()
            raise
        return stored, push, built

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


class Pending:
    """One push between its guard and the end of its row write: fence, undo, settle.

    ``fence`` runs right before the row: the guard must still be this try's (it is
    marked ``writing``), else the push is undone and refused. ``settle`` runs after
    the row: if a later try took the guard in between, this try's row may have
    replaced that try's, so the row is put back to what the holder wrote (or
    removed, if the holder's row is still to come) and the push fails.
    """

    def __init__(self, store: ObjectStore, stored: Any, guard: Guard, obj: str | None):
        self.store, self.stored, self.guard, self.object = store, stored, guard, obj
        self.guarded = True
        self.already_stored = False
        self.replaced: str | None = None  # the object of the earlier try whose value this push replaces
        self.replaced_store: ObjectStore = store  # where that object is (a retry may store elsewhere)

    def __call__(self) -> None:
        """Undo: this push's own object, and the guard while it is still this push's."""
        if self.object is not None:
            self.store.delete(self.object)
        if self.guarded:
            self.guard.release()

    def fence(self) -> None:
        if not self.guarded:
            return
        try:
            self.guard.fence()
        except XComFencedError:
            if self.object is not None:
                self.store.delete(self.object)
            raise

    def settle(self, message: Any, send: Callable[[Any], Any]) -> None:
        if not self.guarded:
            return
        holder = self.guard.still_mine()
        if holder is None:
            if self.replaced and self.replaced != self.object:
                try:  # the earlier try's object: no row names it any more
                    self.replaced_store.delete(self.replaced)
                except XComStoreError as exc:
                    log.warning("XCom %r: the replaced object %s is left for xcomsim gc: %s", message.key,
                                self.replaced, exc)  # fmt: skip
            return
        restored = self._restore(message, holder, send)
        if self.object is not None and self.object != holder.get("object"):
            self.store.delete(self.object)
        raise XComFencedError(
            f"push of XCom {message.key!r} lost its push-once guard to try {holder.get('try_number')} of the task "
            f"instance while its row was being written: this try is over in Airflow's view; {restored}"
        )

    def _restore(self, message: Any, holder: dict[str, Any], send: Callable[[Any], Any]) -> str:
        """Put the row back to the guard holder's value (bounded: each round is another try's progress)."""
        from airflow.sdk.execution_time.comms import DeleteXCom

        for _ in range(8):
            if holder.get("state") == "writing" and holder.get("stored") is not None:
                send(message.model_copy(update={"value": holder["stored"]}))
                done = f"the row holds try {holder.get('try_number')}'s value again"
            elif holder.get("stored") is None and holder.get("state") == "writing":
                log.error("XCom %r: a late row of an earlier try may have replaced try %s's value, which is too "
                          "large to restore from its guard", message.key, holder.get("try_number"))  # fmt: skip
                return "the holder's value could not be restored (too large to keep in its guard)"
            else:  # the holder has not written its row yet (or deleted the key): this try's row must go
                send(DeleteXCom(key=message.key, dag_id=message.dag_id, task_id=message.task_id,
                                run_id=message.run_id, map_index=message.map_index))  # fmt: skip
                done = "this try's row was removed"
            again = self.guard.current() or {}
            if again == holder:
                return done
            holder = again
        return "the row could not be settled: the guard kept changing"


def _object_store(earlier: dict[str, Any] | None, config: BackendConfig, default: ObjectStore) -> ObjectStore:
    """The store an earlier try's object is in: the one its recorded reference names, which need not be this
    push's (values under ``guard_path_values_below`` live with the guards, larger ones at ``path``)."""
    from xcomsim.backend.pull import value_store

    stored = (earlier or {}).get("stored")
    if codec.is_reference(stored):
        try:
            found = value_store(codec.Reference.parse(stored), config.value_paths)
        except XComStoreError:
            found = None
        if found is not None:
            return found
    return default


def plan_value(store: ObjectStore, config: BackendConfig, encoded: codec.Encoded, dag_id: str, run_id: str,
               task_id: str, map_index: int, key: str, attempt: int | None = None,
               inline: bool = False) -> tuple[Any, tuple[str, bytes] | None]:  # fmt: skip
    """The stored form, and the object to upload for it (None: inline), known before anything is written.

    ``attempt``: the try number, so each try of a task instance writes an object of its own. ``inline``:
    never offloaded (Airflow's own keys, which it rewrites inline, past the backend).
    """
    if inline or not config.offloads(encoded.size):
        return codec.inline(encoded), None
    data = codec.compress(encoded.data, config.compression)
    name = codec.object_name(dag_id, run_id, task_id, map_index, key, attempt=attempt)
    reference = codec.Reference(str(store.location), name, codec.digest(data), encoded.size, config.compression)
    return reference.to_uri(), (name, data)  # to_uri checks the length


def store_value(store: ObjectStore, config: BackendConfig, encoded: codec.Encoded, dag_id: str, run_id: str,
                task_id: str, map_index: int, key: str, attempt: int | None = None) -> Any:  # fmt: skip
    """Plan and upload at once (no guard, no checks): what the unguarded mutants write with."""
    stored, upload = plan_value(store, config, encoded, dag_id, run_id, task_id, map_index, key, attempt)
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
