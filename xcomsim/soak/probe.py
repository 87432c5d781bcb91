"""The history recorder, running inside the deployment's task processes.

The soak's generated DAG files call into this module: every backend operation
a task does (push begun / committed / refused, pull, claim, release) is
appended as one JSON line to a file of its own process under
``$XCOMSIM_SOAK_HISTORY``, with the task instance, its try, the worker and the
process's wall clock (corrected for a skewed worker when the history is read).
``install`` also wraps the configured XCom backend's ``delete`` and ``purge``
(Airflow calls them, not the task) and the supervisor channel's row write, so
that the nemesis can SIGKILL a task process between the guard and the row.

Only the standard library is imported here: it runs in every task.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HISTORY = "XCOMSIM_SOAK_HISTORY"
_lock = threading.Lock()
_file: Any = None
_installed = False
_kill_before_row: set[str] = set()  # "dag/run/task/map/key" coordinates whose row write is never sent
_current: dict[str, Any] = {}  # the task instance this process runs (set by ``task``)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def record(op: str, **fields: Any) -> None:
    """Append one event of this process (no-op outside a soak)."""
    global _file
    folder = os.environ.get(HISTORY)
    if not folder:
        return
    event = {"op": op, "t": time.time(), "mono": time.monotonic(), "pid": os.getpid(),
             "worker": os.environ.get("XCOMSIM_SOAK_ROLE", "?"), **_current, **fields}  # fmt: skip
    line = json.dumps(event, default=repr) + "\n"
    with _lock:
        if _file is None:
            _file = open(Path(folder) / f"{event['worker']}-{os.getpid()}.jsonl", "a", buffering=1)  # noqa: SIM115
        _file.write(line)
        _file.flush()
        os.fsync(_file.fileno())  # a SIGKILL right after must not lose the line


PROFILE = "XCOMSIM_PROFILE_PUSHES"  # a folder: each task process's pushes are profiled there, one file a process
_pushes_profiled = 0


@contextmanager
def push_profiled() -> Iterator[None]:
    """cProfile each push of this process, on its CPU clock, into ``$XCOMSIM_PROFILE_PUSHES/push-<pid>-<n>.prof``
    (``n``: 1 for the process's first push; a diagnosis aid: what a push costs a fresh task process, and what
    its first costs more); does nothing when unset."""
    global _pushes_profiled
    folder = os.environ.get(PROFILE)
    if not folder:
        yield
        return
    import cProfile

    _pushes_profiled += 1
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(str(Path(folder) / f"push-{os.getpid()}-{_pushes_profiled}.prof"))


TASK_PROFILE = "XCOMSIM_PROFILE_TASKS"  # a folder: each task process is profiled from its fork to its last push
_task_profile: Any = None


def profile_forked_tasks() -> None:
    """With ``$XCOMSIM_PROFILE_TASKS`` set, cProfile every process this one forks, from the fork on (a diagnosis
    aid: what a task process spends beside its pushes, compared between backends); ``task_profiled`` dumps it."""
    if os.environ.get(TASK_PROFILE):
        os.register_at_fork(after_in_child=_start_task_profile)


def _start_task_profile() -> None:
    global _task_profile
    if not os.environ.get(TASK_PROFILE):
        return
    import cProfile

    _task_profile = cProfile.Profile(time.process_time)
    _task_profile.enable()


def task_profiled() -> None:
    """Dump this task process's profile since its fork into ``$XCOMSIM_PROFILE_TASKS/task-<pid>.prof``."""
    folder = os.environ.get(TASK_PROFILE)
    if folder and _task_profile is not None:
        _task_profile.disable()
        _task_profile.dump_stats(str(Path(folder) / f"task-{os.getpid()}.prof"))


def coordinate(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> str:
    return f"{dag_id}/{run_id}/{task_id}/{map_index}/{key}"


@contextmanager
def operation(op: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Record ``op`` begun, then committed (with what the body put in the dict) or refused with the error."""
    outcome: dict[str, Any] = {}
    began = time.time()
    record(op, phase="begin", **fields)
    cpu = time.process_time()  # this operation's CPU in its process, the probe's own writes excluded
    try:
        yield outcome
    except BaseException as exc:
        record(op, phase="error", began=began, error_type=type(exc).__name__, error=str(exc)[:500],
               **fields, **outcome)  # fmt: skip
        raise
    record(op, phase="ok", began=began, cpu=time.process_time() - cpu, **fields, **outcome)


def task(context: Any) -> dict[str, Any]:
    """Note which task instance this process runs; every later event carries it."""
    ti = context["ti"]
    dag_run = context.get("dag_run")  # its clear_number and run_after: the retry rule's generation and run
    run_after = getattr(dag_run, "run_after", None)
    _current.update(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=ti.map_index,
                    try_number=ti.try_number, ti_id=str(ti.id), clear=int(getattr(dag_run, "clear_number", 0) or 0),
                    run_after=None if run_after is None else run_after.isoformat())  # fmt: skip
    record("task", phase="begin")
    return dict(_current)


def kill_before_row(coordinates: set[str]) -> None:
    """The row writes of these pushes are never sent: this process is SIGKILLed after the guard, before the row."""
    _kill_before_row.update(coordinates)


def install() -> None:
    """Wrap the configured backend's ``delete`` and ``purge``, and the row write; idempotent."""
    global _installed
    if _installed or not os.environ.get(HISTORY):
        return
    _installed = True
    try:
        from airflow.sdk.execution_time.xcom import XCom
    except Exception:  # noqa: BLE001 - not in a task process (the DAG processor parses too)
        return
    for name in ("delete", "purge"):
        original = getattr(XCom, name, None)
        if original is not None:
            setattr(XCom, name, classmethod(_recorded(name, original.__func__)))  # type: ignore[attr-defined]
    _wrap_row_writes()


def _recorded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(cls: type, *args: Any, **kwargs: Any) -> Any:
        fields = {k: kwargs.get(k) for k in ("key", "task_id", "run_id", "dag_id", "map_index") if k in kwargs}
        if args and hasattr(args[0], "key"):  # purge(row)
            fields = {k: getattr(args[0], k, None) for k in ("key", "task_id", "run_id", "dag_id", "map_index")}
        with operation(name, target=fields):
            return func(cls, *args, **kwargs)

    return wrapper


def _wrap_row_writes() -> None:
    """The supervisor channel's ``send``: a ``SetXCom`` is the row write; kill points act just before it.

    The channel is a slotted attrs class, so its ``send`` is wrapped on the class (this process runs one task;
    an instance attribute cannot be set, and the kill point was silently never installed).
    """
    try:
        from airflow.sdk.execution_time import task_runner
    except Exception:  # noqa: BLE001
        return
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    channel = type(comms)
    if comms is None or getattr(channel, "_xcomsim_soak", False):
        return
    original = channel.send

    def send(self: Any, *args: Any, **kwargs: Any) -> Any:  # Airflow calls send(msg=...) and send(msg)
        message = args[0] if args else kwargs.get("msg")
        if type(message).__name__ == "SetXCom":
            where = coordinate(message.dag_id, message.run_id, message.task_id, message.map_index, message.key)
            record("row", phase="begin", coordinate=where)
            if where in _kill_before_row:
                record("nemesis", fault="kill-before-row", coordinate=where)
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    channel.send = send
    channel._xcomsim_soak = True
