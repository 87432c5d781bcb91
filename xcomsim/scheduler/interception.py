"""The I/O points where a scheduled worker may be preempted, installed once per process.

Every way a backend reaches a store passes one of these (and a thread may also
route them through a fault injector, ``set_fault``): borrowing a SQLAlchemy
connection (``Pool.connect``), a redis-py command (``Redis.execute_command``),
a botocore API call (``BaseClient._make_api_call``: boto3, S3Hook), an s3fs
call (``fsspec.asyn.sync``: ``ObjectStoragePath``, whose aiobotocore runs on
fsspec's own thread), and a task's message to its supervisor (the Execution
API: the ``xcom`` row). The hooks are class-level, so a backend written without
xcomsim in mind, building its own clients, is intercepted all the same. A
thread that is not a scheduled worker passes straight through.

SQL yields at connection borrow, not per statement: the per-test SQLite
database runs one transaction at a time, so statements inside one borrow are
atomic with respect to other workers, exactly as SQLite makes them.

Not every intercepted call is a switch point. A worker is paused only where
the order of calls can change what the guarantees see (``matters``): XCom
messages to the supervisor, object and key operations on S3, Redis and s3fs,
SQL borrows. A ``MaskSecret`` or ``GetConnection`` message, a ``HeadBucket``,
is recorded but never paused at. Nor is any call made while the worker may
hold a lock that the others need (``holds_lock``): inside a
``functools.cached_property`` that locks (Python 3.11 shares one lock per
property across all instances), an import, a logging handler, or the
supervisor's handling of a message (its channel is shared by every worker
acting as that task instance). A paused lock holder would block every other
worker until the step timed out.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

_local = threading.local()
_installed = False
_lock = threading.Lock()

# What decides whether a call is a switch point (see ``matters``).
_API_WORDS = ("XCom",)  # an api message matters only if its type names XCom (GetXCom, SetXCom, ...)
_INCIDENTAL_REDIS = frozenset({"PING", "HELLO", "CLIENT", "SELECT", "AUTH", "INFO", "CONFIG", "ECHO", "COMMAND",
                               "READONLY", "SCRIPT"})  # fmt: skip
_S3_OBJECT_WORDS = ("Object", "Multipart", "Part")
_INCIDENTAL_FS = frozenset({"set_session", "get_session", "connect", "lsbuckets"})
_MAX_DEPTH = 400  # frames walked looking for a lock holder; a worker's stack is far shallower


def matters(label: str) -> bool:
    """Whether a call with this label can change what the guarantees see (only those are switch points)."""
    service, _, rest = label.partition(" ")
    operation = rest.split(" ", 1)[0]
    if service == "api":
        return any(word in operation for word in _API_WORDS)
    if service == "redis":
        return operation.upper() not in _INCIDENTAL_REDIS
    if service == "sql":
        return True
    if service == "s3" and operation[:1].isupper():  # botocore: PutObject, HeadBucket, ...
        return any(word in operation for word in _S3_OBJECT_WORDS)
    return operation not in _INCIDENTAL_FS  # s3fs / fsspec: put_file, cat_file, rm, info, ...


def _locking_cached_property() -> bool:
    return hasattr(functools.cached_property(lambda self: None), "lock")


def _lock_holders() -> set[CodeType]:
    import logging

    codes = {logging.Handler.handle.__code__}  # emits under the handler's lock
    if _locking_cached_property():  # Python < 3.12: one RLock per property, shared by all instances
        codes.add(functools.cached_property.__get__.__code__)
    return codes


_LOCK_HOLDERS: set[CodeType] = _lock_holders()


_HOLDER_CODES: dict[CodeType, bool] = {}  # the verdict per code object, memoised (walked at every switch point)
_MAX_MEMO = 50_000  # code objects remembered before the memo starts over (exec'd code is new each time)


def register_lock_holder(function: Callable[..., Any]) -> None:
    """Never switch while ``function`` is on the stack: it holds a lock other workers may need."""
    _LOCK_HOLDERS.add(getattr(function, "__code__", None) or function.__func__.__code__)  # type: ignore[attr-defined]
    _HOLDER_CODES.clear()


def _is_holder(code: CodeType) -> bool:
    verdict = code in _LOCK_HOLDERS or code.co_filename.startswith("<frozen importlib._bootstrap")
    if len(_HOLDER_CODES) >= _MAX_MEMO:
        _HOLDER_CODES.clear()
    _HOLDER_CODES[code] = verdict
    return verdict


def holds_lock() -> bool:
    """Whether the calling thread may hold a lock the other workers need (see the module docstring)."""
    if getattr(_local, "atomic", 0):
        return True
    frame = sys._getframe(1)
    memo = _HOLDER_CODES
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return False
        code = frame.f_code
        verdict = memo.get(code)
        if verdict is None:
            verdict = _is_holder(code)
        if verdict:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def atomic() -> Iterator[None]:
    """No switch in this thread while the block runs (it holds something the other workers need)."""
    _local.atomic = getattr(_local, "atomic", 0) + 1
    try:
        yield
    finally:
        _local.atomic -= 1


def _switchable(label: str) -> bool:
    return matters(label) and not holds_lock()


def set_hook(hook: Callable[[str, bool], None] | None) -> None:
    """Route this thread's I/O to ``hook(label, preemptible)`` (``None``: stop)."""
    _local.hook = hook


def set_fault(fault: Callable[[str, Callable[[], Any]], Any] | None) -> None:
    """Route this thread's intercepted calls through ``fault(label, call)`` (``None``: stop)."""
    _local.fault = fault


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """While the block runs this thread serves a request on the worker's behalf (the in-process
    Execution API, inline): its I/O is the server's, neither a switch point nor the worker's to
    fail. The worker's own points are the message it sent, before and after. A server is another
    host: it reads the world's clock, not the worker's skewed one."""
    from xcomsim.env.clock import unskewed

    hook, fault = getattr(_local, "hook", None), getattr(_local, "fault", None)
    _local.hook = _local.fault = None
    try:
        with unskewed():
            yield
    finally:
        _local.hook, _local.fault = hook, fault


def io_point(label: str, preemptible: bool = True) -> None:
    """I/O about to happen; ``preemptible=False`` only records it (a statement inside a borrow).

    A preemptible point still switches only if the caller holds no lock the others need.
    """
    hook = getattr(_local, "hook", None)
    if hook is not None:
        hook(label, preemptible and not holds_lock())


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        from xcomsim.env import execution_api

        execution_api.set_request_scope(serving)  # inline requests: the server's I/O is not the worker's
        for wrap in (_wrap_sqlalchemy, _wrap_redis, _wrap_botocore, _wrap_fsspec, _wrap_task_comms):
            try:
                wrap()
            except ImportError:  # a library that is not installed makes no I/O to intercept
                pass
        _installed = True


def _wrap(owner: Any, name: str, label: Callable[..., str], holds: bool = False, record_only: bool = False) -> None:
    """Route ``owner.name`` through the thread's hook and fault; ``holds``: the call itself holds a lock;
    ``record_only``: only shown in the timeline, never a switch point nor a fault's to fail."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hook = getattr(_local, "hook", None)
        fault = None if record_only else getattr(_local, "fault", None)
        if hook is None and fault is None:
            return original(*args, **kwargs)
        text = label(*args, **kwargs)
        if hook is not None:
            hook(text, not record_only and _switchable(text))
        call = original
        if holds:
            def call(*a: Any, **k: Any) -> Any:
                with atomic():
                    return original(*a, **k)
        if fault is not None:
            return fault(text, lambda: call(*args, **kwargs))
        return call(*args, **kwargs)

    wrapper.__xcomsim_original__ = original  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def _wrap_sqlalchemy() -> None:
    from sqlalchemy.pool import Pool

    _wrap(Pool, "connect", lambda pool, *a, **k: "sql borrow connection")
    _wrap_statements()


STATEMENT_METHODS = ("do_execute", "do_executemany", "do_execute_no_params")


def _wrap_statements() -> None:
    """Record each statement a scheduled worker sends (never a switch point: SQL yields at the borrow).

    At the dialect's own execute methods, where a statement meets its DB-API cursor: idle it is one
    call and a thread-local lookup. (SQLAlchemy's ``before_cursor_execute`` event would put every
    statement of every engine on a slower path, +5-8% on an in-memory ``SELECT 1``.) A dialect
    that overrides one of them (psycopg2's ``executemany``) sends those statements unrecorded.
    """
    from sqlalchemy.engine.default import DefaultDialect

    def label(dialect: Any, cursor: Any, statement: str, *args: Any, **kwargs: Any) -> str:
        return _statement_label(statement)

    for name in STATEMENT_METHODS:
        _wrap(DefaultDialect, name, label, record_only=True)


@functools.lru_cache(maxsize=1024)
def _statement_label(statement: str) -> str:
    """A statement as the timeline shows it; the same few statements recur in every example of a race."""
    return "sql " + " ".join(statement.split())[:90]


def _wrap_redis() -> None:
    import redis

    def label(client: Any, *args: Any, **kwargs: Any) -> str:
        command = str(args[0]) if args else "?"
        key = f" {args[1]!r}" if len(args) > 1 and isinstance(args[1], (str, bytes)) else ""
        return f"redis {command.upper()}{key[:80]}"

    _wrap(redis.Redis, "execute_command", label)


def _wrap_botocore() -> None:
    from botocore.client import BaseClient

    def label(client: Any, operation: str, params: dict[str, Any], *args: Any, **kwargs: Any) -> str:
        key = params.get("Key") or params.get("Prefix") or ""
        return f"s3 {operation} {key}"[:120]

    _wrap(BaseClient, "_make_api_call", label)


def _wrap_fsspec() -> None:
    """s3fs (``ObjectStoragePath``) runs aiobotocore on fsspec's own loop thread; its calls leave the
    caller's thread through ``fsspec.asyn.sync``, so that is where they are seen."""
    try:
        import fsspec.asyn
    except ImportError:
        return

    def label(loop: Any, func: Any, *args: Any, **kwargs: Any) -> str:
        owner = getattr(func, "__self__", None) or (args[0] if args else None)
        protocol = getattr(owner, "protocol", "fs")
        protocol = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
        path = next((a for a in args if isinstance(a, str)), "")
        return f"{protocol} {getattr(func, '__name__', '?').lstrip('_')} {path}"[:120]

    _wrap(fsspec.asyn, "sync", label)


def _wrap_task_comms() -> None:
    from xcomsim.task_context import _TaskComms

    # The supervisor answers under the channel's lock, shared by every worker acting as the task instance.
    _wrap(_TaskComms, "send", lambda comms, msg, *a, **k: f"api {type(msg).__name__}", holds=True)
