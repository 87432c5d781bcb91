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
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_local = threading.local()
_installed = False
_lock = threading.Lock()


def set_hook(hook: Callable[[str, bool], None] | None) -> None:
    """Route this thread's I/O to ``hook(label, preemptible)`` (``None``: stop)."""
    _local.hook = hook


def set_fault(fault: Callable[[str, Callable[[], Any]], Any] | None) -> None:
    """Route this thread's intercepted calls through ``fault(label, call)`` (``None``: stop)."""
    _local.fault = fault


def io_point(label: str, preemptible: bool = True) -> None:
    """I/O about to happen; ``preemptible=False`` only records it (a statement inside a borrow)."""
    hook = getattr(_local, "hook", None)
    if hook is not None:
        hook(label, preemptible)


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _wrap_sqlalchemy()
        _wrap_redis()
        _wrap_botocore()
        _wrap_fsspec()
        _wrap_task_comms()
        _installed = True


def _wrap(owner: Any, name: str, label: Callable[..., str]) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hook, fault = getattr(_local, "hook", None), getattr(_local, "fault", None)
        if hook is None and fault is None:
            return original(*args, **kwargs)
        text = label(*args, **kwargs)
        if hook is not None:
            hook(text, True)
        if fault is not None:
            return fault(text, lambda: original(*args, **kwargs))
        return original(*args, **kwargs)

    wrapper.__xcomsim_original__ = original  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def _wrap_sqlalchemy() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    _wrap(Pool, "connect", lambda pool, *a, **k: "sql borrow connection")

    def statement(conn: Any, cursor: Any, sql: str, params: Any, context: Any, executemany: bool) -> None:
        if getattr(_local, "hook", None) is not None:  # the label costs microseconds: only for a scheduled worker
            io_point("sql " + " ".join(sql.split())[:90], preemptible=False)

    event.listen(Engine, "before_cursor_execute", statement)


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

    _wrap(_TaskComms, "send", lambda comms, msg, *a, **k: f"api {type(msg).__name__}")
