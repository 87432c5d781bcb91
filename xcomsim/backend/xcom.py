"""ExclusiveXCom: the reference XCom backend that keeps the exclusive-XCom guarantees.

* push-once: an XCom coordinate is written at most once; the guard is an atomic
  create-if-absent in the object store, taken before anything is written;
* push- and pull-scope: the DAG's ``XComPolicy`` decides, the caller being the
  task that is running (from Airflow's task context), never an argument;
* offload: values whose serialised size is at or above the threshold live in S3
  or Redis at one fixed name per coordinate; the ``xcom`` row holds a reference.

Configure with ``[core] xcom_backend = xcomsim.backend.ExclusiveXCom`` and the
``[xcomsim]`` section (see ``xcomsim.backend.config``).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from airflow.sdk.bases.xcom import BaseXCom

from xcomsim.backend import codec
from xcomsim.backend.config import BackendConfig, Undeclared, load
from xcomsim.backend.errors import XComOverwriteError, XComScopeError, XComStoreError, XComValueError
from xcomsim.backend.policy import AIRFLOW_INTERNAL_KEYS, policy_for
from xcomsim.backend.stores import ObjectStore, StoreLocation, open_store

MAX_KEY_LEN = 512  # the xcom.key column
log = logging.getLogger(__name__)


_TASK_RUNNER = "airflow.sdk.execution_time.task_runner"


def _running_task() -> Any | None:
    """The task instance whose code is running in this process; None outside any task.

    Task code runs inside Airflow's task context. Callbacks (``on_success_callback``,
    ``on_failure_callback``, ...) and listeners run outside it, from the task
    runner's ``finalize``: there the task instance being finalised is the caller,
    found on the task runner's own frames. Code the task runner runs where no task
    instance can be found is refused, never treated as "not task code".
    """
    from airflow.sdk.definitions._internal.contextmanager import _CURRENT_CONTEXT

    if _CURRENT_CONTEXT:
        return _CURRENT_CONTEXT[-1]["ti"]
    return _finalising_task()


def _finalising_task() -> Any | None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    in_runner = False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == _TASK_RUNNER:
            in_runner = True
            local = frame.f_locals
            context = local.get("context")
            for candidate in (local.get("ti"), context.get("ti") if isinstance(context, Mapping) else None):
                if isinstance(candidate, RuntimeTaskInstance):
                    return candidate
        frame = frame.f_back
    if in_runner:
        raise XComScopeError(
            "XCom call from code Airflow's task runner runs outside any task instance (no caller to check "
            "the XCom policy against): refused"
        )
    return None


class ExclusiveXCom(BaseXCom):
    """See the module docstring; every refusal raises before anything is written."""

    # What it claims, for the conformance kit (xcomsim.conformance.capabilities). Reruns in the
    # kit push again, so its runs use the documented escape from push-once across tries.
    xcomsim_contract = {
        "offload": ({"xcomsim.xcom_objectstorage_threshold": 1000}, 1000),
        "scoping": "xcomsim-policy",
        "claim_store": "xcomsim.backend.claims:open_claim_store",
        "config": {"xcomsim.retry_replaces": "true"},
        "push_once": True,
        # A crashed try's guard holds its key for this lease (a zombie try may still be pushing).
        "retry_lease": ({"xcomsim.guard_lease_seconds": 3}, 3),
    }

    # ----------------------------------------------------------------- push
    @classmethod
    def _guard_type(cls, *args: Any) -> _Guard:
        return _Guard(*args)

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
                row: Any = await SUPERVISOR_COMMS.asend(_get_row(message))
            except Exception as read_error:
                row = read_error
            if cls._landed_or_undone(message, exc, undo, lambda _: _raise_if_error(row)):
                return
            raise

    @classmethod
    def _prepare_push(cls, key, value, dag_id, task_id, run_id, map_index, dag_result, mapped_length):
        from airflow.sdk.execution_time.comms import SetXCom

        stored, undo = cls._write(key, value, dag_id, task_id, run_id, map_index)
        message = SetXCom(
            key=key,
            value=stored,
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            dag_result=dag_result,
            mapped_length=mapped_length,
        )
        return message, undo

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
            row = read(_get_row(message))
        except Exception:
            log.warning("XCom %r: the row write failed and the row cannot be read back; nothing undone", message.key)
            return False
        if isinstance(row, XComResult) and row.value is not None and row.value == message.value:
            log.warning("XCom %r: the reply to the row write was lost after the row committed: %s", message.key, exc)
            return isinstance(exc, Exception)
        undo()
        return False

    @classmethod
    def _write(cls, key: Any, value: Any, dag_id: Any, task_id: Any, run_id: Any, map_index: Any) -> tuple[Any, Any]:
        """Every check, the guard and the object: the one way anything is written. Returns (stored form, undo)."""
        config = load()
        map_index = -1 if map_index is None else map_index
        cls._check_coordinate(dag_id, run_id, task_id, key)
        caller = cls._check_pusher(dag_id, task_id, run_id, map_index, key)
        if key in AIRFLOW_INTERNAL_KEYS:
            cls._check_bookkeeping(caller, key, value)
        cls._check_push_scope(config, dag_id, task_id, key)
        _check_key(key, task_id)
        encoded = codec.encode(value, key=key, task_id=task_id)
        store = open_store(config.path)
        guard = cls._guard_type(store, dag_id, run_id, task_id, map_index, key)
        if key not in AIRFLOW_INTERNAL_KEYS:  # Airflow rewrites its own bookkeeping keys
            guard.acquire(int(caller.try_number or 0), _retry_replaces(dag_id, config), ti_id=str(caller.id),
                          run=_run_identity(caller), lease_seconds=config.guard_lease_seconds,
                          row_exists=lambda: _row_exists(dag_id, run_id, task_id, map_index, key))  # fmt: skip
        try:
            stored = _store_value(store, config, encoded, dag_id, run_id, task_id, map_index, key)
        except BaseException:
            guard.release()
            raise
        undo = _Undo(store, stored, guard, config.guard_lease_seconds)
        return stored, undo

    @classmethod
    def _check_bookkeeping(cls, caller: Any, key: str, value: Any) -> None:
        """``skipmixin_key`` skips push-scope and the guard, so only what Airflow's branching writes is let in.

        That is a task whose operator is a ``SkipMixin`` (branch and short-circuit
        operators) pushing ``{"skipped": [task ids]}`` or ``{"followed": [task ids]}``
        naming tasks of its own DAG.
        """
        task = getattr(caller, "task", None)
        dag_tasks = set(getattr(getattr(task, "dag", None), "task_ids", ()))
        shape_ok = (
            isinstance(value, dict)
            and len(value) == 1
            and next(iter(value)) in ("skipped", "followed")
            and isinstance(ids := next(iter(value.values())), list)
            and all(isinstance(i, str) and i in dag_tasks for i in ids)
        )
        if not (isinstance(task, _skip_mixins()) and shape_ok):
            raise XComScopeError(
                f"XCom push refused: key {key!r} is Airflow's branching bookkeeping; only a branching "
                f"operator (SkipMixin) writes it, as {{'skipped' or 'followed': [task ids of its DAG]}}. "
                f"Task {caller.task_id!r} ({type(task).__name__}) pushed {type(value).__name__} {str(value)[:80]!r}"
            )

    @classmethod
    def _check_coordinate(cls, dag_id: str, run_id: str, task_id: str, key: str) -> None:
        """Refuse, before any I/O, what would change the meaning of an Execution API URL.

        The task SDK builds ``xcoms/{dag_id}/{run_id}/{task_id}/{key}`` without
        quoting: a ``/`` shifts the segments (``run_id="r/other_task/secret?"``
        reads another task's key), ``..`` walks up, ``?``/``#`` cut the path, ``%``
        is decoded by the server (``%2e%2e``), NUL breaks the request, and
        characters outside ASCII fail deep in the HTTP client.
        """
        try:
            for what, part in (("DAG id", dag_id), ("run_id", run_id), ("task_id", task_id), ("XCom key", key)):
                _check_url_part(what, part)
        except XComValueError as exc:  # name who asked, for what, as every refusal does
            try:
                caller = _running_task()
            except XComScopeError:
                caller = None
            who = f"task {caller.task_id!r}" if caller is not None else "a caller outside any task"
            raise XComValueError(f"{exc} [{who}; source task {task_id!r}; key {key!r}]") from None

    @classmethod
    def _check_pusher(cls, dag_id: str, task_id: str, run_id: str, map_index: int, key: str) -> Any:
        """The running task instance, which must be the coordinate pushed to: identity is never an argument."""
        caller = _running_task()
        if caller is None:
            raise XComScopeError(
                f"XCom push of key {key!r} as task {task_id!r} of DAG {dag_id!r} from outside any running task: "
                "refused (the pusher is the running task instance, never an argument)"
            )
        mine = (caller.dag_id, caller.task_id, caller.run_id, caller.map_index)
        if (dag_id, task_id, run_id, map_index) != mine:
            raise XComScopeError(
                f"XCom push refused: task {caller.task_id!r} of DAG {caller.dag_id!r} (run {caller.run_id!r}, "
                f"map_index {caller.map_index}) may push only as itself, not as task {task_id!r} of DAG "
                f"{dag_id!r} (run {run_id!r}, map_index {map_index}); key {key!r}"
            )
        return caller

    @classmethod
    def _check_push_scope(cls, config: BackendConfig, dag_id: str, task_id: str, key: str) -> None:
        policy = policy_for(dag_id)
        if policy is None:
            if config.undeclared_dags is Undeclared.DENY:
                raise XComScopeError(
                    f"DAG {dag_id!r} declares no XCom policy and [xcomsim] undeclared_dags=deny: "
                    f"task {task_id!r} may not push key {key!r}"
                )
            return
        if not policy.may_push(task_id, key):
            allowed = sorted(policy.pushes.get(task_id, ()))
            raise XComScopeError(
                f"XCom push refused: DAG {dag_id!r}, task {task_id!r} may not push key {key!r} "
                f"(its policy allows {allowed})"
            )

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
        stored, _ = cls._write(key, value, dag_id, task_id, run_id, map_index)
        return stored

    # ----------------------------------------------------------------- pull
    @classmethod
    def _check_pull_scope(cls, dag_id: str, task_id: str, key: str) -> None:
        try:
            caller = _running_task()
        except XComScopeError as exc:  # the caller is unknowable: name what was asked for
            raise XComScopeError(f"{exc} [caller unknown; source task {task_id!r} of DAG {dag_id!r}; key {key!r}]") from None
        if caller is None:
            return  # not task code: the harness, a script, a test reading results
        policy = policy_for(caller.dag_id)
        if policy is None:
            if load().undeclared_dags is Undeclared.DENY:
                raise XComScopeError(
                    f"XCom pull refused: DAG {caller.dag_id!r} declares no XCom policy and "
                    f"[xcomsim] undeclared_dags=deny (caller {caller.task_id!r}, source {task_id!r}, key {key!r})"
                )
            return
        if not policy.may_pull(caller.task_id, dag_id, task_id, key):
            source = task_id if dag_id == caller.dag_id else f"{dag_id}/{task_id}"
            raise XComScopeError(
                f"XCom pull refused: in DAG {caller.dag_id!r}, task {caller.task_id!r} may not pull "
                f"key {key!r} from task {source!r}"
            )

    @classmethod
    def get_one(cls, *, key: str, dag_id: str, task_id: str, run_id: str, map_index: int | None = None,
                include_prior_dates: bool = False) -> Any | None:  # fmt: skip
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        exact = None if include_prior_dates or map_index is None else (run_id, map_index)
        with _pulling(_Source(dag_id, task_id, key, exact)):
            return super().get_one(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index,
                                   include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    async def aget_one(cls, *, key: str, dag_id: str, task_id: str, run_id: str, map_index: int | None = None,
                       include_prior_dates: bool = False) -> Any | None:  # fmt: skip
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        exact = None if include_prior_dates or map_index is None else (run_id, map_index)
        with _pulling(_Source(dag_id, task_id, key, exact)):
            return await super().aget_one(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                          map_index=map_index, include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    def get_all(cls, *, key: str, dag_id: str, task_id: str, run_id: str, include_prior_dates: bool = False) -> Any:
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        with _pulling(_Source(dag_id, task_id, key)):
            return super().get_all(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                   include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    async def aget_all(cls, *, key: str, dag_id: str, task_id: str, run_id: str,
                       include_prior_dates: bool = False) -> Any:  # fmt: skip
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        with _pulling(_Source(dag_id, task_id, key)):
            return await super().aget_all(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                          include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    def deserialize_value(cls, result: Any) -> Any:  # type: ignore[override]
        """The value a row stores; a reference is followed only to the pulled source's own object."""
        source = cls._lazy_sequence_source(result)
        stored = result.value
        if not codec.is_reference(stored):
            return codec.decode_inline(stored)
        with _pulling(source) if source is not None else contextlib.nullcontext():
            return codec.decode_bytes(_fetch(stored, _PULLING.get()))

    @classmethod
    def _lazy_sequence_source(cls, result: Any) -> _Source | None:
        """Check a ``LazyXComSequence`` read (a mapped source's ``XComArg`` resolved and iterated).

        It reads values without ``get_one``/``get_all`` and hands each to
        ``deserialize_value`` alone, so the source is taken from the sequence on
        the caller's frame and checked here; if it cannot be found the read is refused.
        """
        from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence, _XComWrapper

        if type(result) is not _XComWrapper:
            return None
        frame = sys._getframe(1)
        wanted = LazyXComSequence.__getitem__.__code__
        while frame is not None and frame.f_code is not wanted:
            frame = frame.f_back
        sequence = frame.f_locals.get("self") if frame is not None else None
        if not isinstance(sequence, LazyXComSequence):
            raise XComScopeError("XCom read through a lazy sequence whose source cannot be found: refused")
        xcom_arg = sequence._xcom_arg
        dag_id, task_id, key = xcom_arg.operator.dag_id, xcom_arg.operator.task_id, xcom_arg.key
        cls._check_coordinate(dag_id, sequence._ti.run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        return _Source(dag_id, task_id, key)

    # ----------------------------------------------------------------- sweep
    @classmethod
    def sweep(cls, store: Any, engine: Any, *, dry_run: bool = True, grace_seconds: float | None = None) -> Any:
        """``xcomsim gc`` for this backend's store: see ``xcomsim.backend.gc``."""
        from xcomsim.backend.gc import sweep

        return sweep(store, engine, dry_run=dry_run, grace_seconds=grace_seconds)

    # ----------------------------------------------------------------- delete
    @classmethod
    def delete(cls, key: str, task_id: str, dag_id: str, run_id: str, map_index: int | None = None) -> None:
        """Delete a row and its object, unless push-once protects it.

        Airflow calls this when a task is retried, before the new try runs, for
        every key the earlier try pushed. Under push-once the first value must
        stay intact, so it is kept and the new try's push raises
        XComOverwriteError; with ``retry_replaces`` it is deleted so the new try
        can write it again. The object deleted is this coordinate's own, at its
        fixed name, whatever the row says: a row can be written by other code.
        """
        from airflow.sdk.execution_time.comms import DeleteXCom
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        cls._check_coordinate(dag_id, run_id, task_id, key)
        if not cls._retry_replaces_for(dag_id, key):
            log.info("push-once: keeping XCom %r of %s.%s for run %s", key, dag_id, task_id, run_id)
            return
        index = -1 if map_index is None else map_index
        row = cls._get_xcom_db_ref(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index)
        # The row goes first: if deleting the object fails after it, an orphan is left for gc, never a dangling row.
        SUPERVISOR_COMMS.send(DeleteXCom(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index))
        cls.purge(_Row(dag_id, run_id, task_id, index, key, row.value))
        if key not in AIRFLOW_INTERNAL_KEYS:  # a later try may write it afresh: leave nothing of it
            _Guard(open_store(load().path), dag_id, run_id, task_id, index, key).forget()

    @staticmethod
    def _retry_replaces_for(dag_id: str, key: str) -> bool:
        """Whether a retry's delete of ``key`` really deletes (Airflow's own keys always do)."""
        return key in AIRFLOW_INTERNAL_KEYS or _retry_replaces(dag_id)

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        """Delete the offloaded object of a row being deleted: its own object, at its fixed name.

        The name comes from the row's coordinate, never from the reference it
        holds (a forged reference must not make a retry delete someone else's
        object). Given a row without its coordinate (Airflow's ``XComResult``
        carries only key and value), nothing is deleted: ``xcomsim gc`` collects
        what is left. The push-once guard stays: a cleared task pushing again is
        an overwrite unless its policy sets ``retry_replaces``.
        """
        if not codec.is_reference(getattr(xcom, "value", None)):
            return
        coordinate = [getattr(xcom, name, None) for name in ("dag_id", "run_id", "task_id", "map_index", "key")]
        if any(part is None for part in coordinate):
            log.warning("purge: row without its coordinate; its object is left for xcomsim gc")
            return
        dag_id, run_id, task_id, map_index, key = coordinate
        open_store(load().path).delete(codec.object_name(dag_id, run_id, task_id, map_index, key))


def _skip_mixins() -> tuple[type, ...]:
    """The SkipMixin classes of the installed Airflow (task SDK, and the standard provider's own)."""
    import importlib

    found = []
    for module in ("airflow.sdk.bases.skipmixin", "airflow.providers.standard.utils.skipmixin"):
        try:
            found.append(importlib.import_module(module).SkipMixin)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


class _Undo:
    """Undoes one push (its object, its guard); ``within_lease`` fences a push that took too long.

    A later try may take over a guard without a row once it is older than the
    guard lease, so a push must not write its row after that: it is undone
    instead, and the later try's value is the one stored.
    """

    def __init__(self, store: ObjectStore, stored: Any, guard: _Guard, lease_seconds: float):
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


def _run_identity(caller: Any) -> str:
    """Which run of a run_id this is: a run deleted and triggered again under the same id is another run."""
    dag_run = getattr(getattr(caller, "_ti_context_from_server", None), "dag_run", None)
    run_after = getattr(dag_run, "run_after", None)
    return "" if run_after is None else f"{run_after.isoformat()}#{getattr(dag_run, 'clear_number', 0) or 0}"


def _get_row(message: Any) -> Any:
    from airflow.sdk.execution_time.comms import GetXCom

    return GetXCom(key=message.key, dag_id=message.dag_id, task_id=message.task_id, run_id=message.run_id,
                   map_index=message.map_index)  # fmt: skip


def _raise_if_error(found: Any) -> Any:
    if isinstance(found, BaseException):
        raise found
    return found


@dataclasses.dataclass(frozen=True)
class _Row:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    key: str
    value: Any


@dataclasses.dataclass(frozen=True)
class _Source:
    """What a pull asked for; ``exact`` is (run_id, map_index) when one row is meant."""

    dag_id: str
    task_id: str
    key: str
    exact: tuple[str, int] | None = None


_PULLING: contextvars.ContextVar[_Source | None] = contextvars.ContextVar("xcomsim_pulling", default=None)


@contextlib.contextmanager
def _pulling(source: _Source) -> Iterator[None]:
    token = _PULLING.set(source)
    try:
        yield
    finally:
        _PULLING.reset(token)


def _fetch(uri: str, source: _Source | None) -> bytes:
    """The bytes of the object a reference names, if it is the pulled source's own in the configured store.

    Without a source (the harness or a script reading rows back), any value
    object of the configured store and prefix is accepted.
    """
    ref = codec.Reference.parse(uri)
    store = open_store(load().path)
    where = uri.partition("?")[0]
    if not StoreLocation.parse(ref.store_path).same_place(store.location):
        raise XComStoreError(
            f"XCom row holds reference {where}, outside this backend's store {store.location}: refused"
        )
    if source is None:
        owned = ref.name.startswith("values/")
    elif source.exact is not None:
        owned = ref.name == codec.object_name(source.dag_id, source.exact[0], source.task_id, source.exact[1], source.key)
    else:
        owned = ref.name.startswith(codec.source_folder(source.dag_id, source.task_id, source.key))
    if not owned:
        raise XComStoreError(
            f"XCom row of key {source.key if source else '?'!r} holds reference {where}, which is not that "
            "XCom's own object: refused (a row can be written by other code; only the object this backend "
            "wrote for the coordinate is its value)"
        )
    data = store.get(ref.name)
    if codec.digest(data) != ref.sha256:
        raise XComStoreError(f"object {where} no longer holds the bytes this XCom row was written with")
    return codec.decompress(data, ref.codec)


def _store_value(store: ObjectStore, config: BackendConfig, encoded: codec.Encoded, dag_id: str, run_id: str,
                 task_id: str, map_index: int, key: str) -> Any:  # fmt: skip
    if not config.offloads(encoded.size):
        return codec.inline(encoded)
    data = codec.compress(encoded.data, config.compression)
    name = codec.object_name(dag_id, run_id, task_id, map_index, key)
    reference = codec.Reference(str(store.location), name, codec.digest(data), encoded.size, config.compression)
    uri = reference.to_uri()  # checks the length before anything is written
    store.put(name, data)
    return uri


_URL_RESERVED = "/?#%\\"


def _check_url_part(what: str, part: Any) -> None:
    if not isinstance(part, str) or not part:
        raise XComValueError(f"{what} must be a non-empty string, got {part!r}")
    shown = repr(part) if len(part) <= 60 else f"{part[:40]!r}... ({len(part)} chars)"
    for char in part:
        if char in _URL_RESERVED or not " " <= char <= "~":
            raise XComValueError(
                f"{what} {shown} contains {char!r} (U+{ord(char):04X}): refused before anything was read or "
                "written. Airflow's task SDK puts DAG id, run_id, task_id and key into Execution API URLs "
                "unquoted, so they may hold printable ASCII only, without / ? # % or backslash"
            )
    if part in (".", ".."):
        raise XComValueError(f"{what} {shown} is a relative path segment; Execution API URLs would resolve it")


def _check_key(key: str, task_id: str) -> None:
    if not isinstance(key, str) or not key:
        raise XComValueError(f"task {task_id!r} pushed an XCom with an empty or non-string key {key!r}")
    if len(key) > MAX_KEY_LEN:
        raise XComValueError(
            f"task {task_id!r} pushed XCom key {key[:40]!r}... of {len(key)} chars; Airflow's xcom.key holds {MAX_KEY_LEN}"
        )


def _retry_replaces(dag_id: str, config: BackendConfig | None = None) -> bool:
    """The DAG's policy's ``retry_replaces``, else the configuration's (``config``: the one the caller
    already read for this operation; a read is ~0.1 ms, seven ``conf.get``)."""
    policy = policy_for(dag_id)
    if policy is not None:
        return policy.retry_replaces
    return (config or load()).retry_replaces


class _Guard:
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


def _row_exists(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> bool:
    """Whether the ``xcom`` table has a row for the coordinate (asked through the supervisor)."""
    from airflow.sdk.execution_time.comms import GetXCom, GetXComCount, XComCountResponse, XComResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    row = SUPERVISOR_COMMS.send(GetXCom(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index))
    if isinstance(row, XComResult) and row.value is not None:
        return True
    # A stored None reads like no row: count rows of the task's key (any map index); none means none.
    count = SUPERVISOR_COMMS.send(GetXComCount(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id))
    return not (isinstance(count, XComCountResponse) and count.len == 0)
