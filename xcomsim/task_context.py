"""Code that runs as a task instance, without a DAG run loop around it.

Property tests need many small workers, each acting as one running task
instance (pushing, pulling, claiming), interleaved at will. Running a whole DAG
per example is too slow and too coarse, so this module starts real task
instances (real rows, moved to ``running`` through the Execution API, like a
worker does) and lets any thread act as one of them: inside
``handle.active()``, ``ti.xcom_push``/``xcom_pull``, ``XCom.set`` and the
backend's own caller lookup behave exactly as in task code.

Airflow keeps the running task's supervisor channel and context in two process
globals (``task_runner.SUPERVISOR_COMMS`` and the context stack). While
``thread_local_task_state()`` is active both are made per-thread, so several
threads can be different task instances at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

_local = threading.local()


def _active_comms() -> Any:
    comms = getattr(_local, "comms", None)
    if comms is None:
        raise AttributeError("SUPERVISOR_COMMS")
    return comms


class _PerThreadStack:
    """Stands in for Airflow's context stack (a list) with one stack per thread."""

    def _stack(self) -> list[Any]:
        stack = getattr(_local, "context_stack", None)
        if stack is None:
            stack = _local.context_stack = []
        return stack

    def append(self, item: Any) -> None:
        self._stack().append(item)

    def pop(self) -> Any:
        return self._stack().pop()

    def __getitem__(self, index: int) -> Any:
        return self._stack()[index]

    def __len__(self) -> int:
        return len(self._stack())

    def __bool__(self) -> bool:
        return bool(self._stack())

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._stack()))


_install_lock = threading.Lock()
_install_depth = 0
_saved: dict[str, Any] = {}


@contextlib.contextmanager
def thread_local_task_state() -> Iterator[None]:
    """Make the running-task globals per-thread while the block runs (re-entrant)."""
    global _install_depth
    from airflow.sdk.definitions._internal import contextmanager as ctx_module
    from airflow.sdk.execution_time import context as exec_context
    from airflow.sdk.execution_time import task_runner

    with _install_lock:
        if _install_depth == 0:
            _saved["stack"] = ctx_module._CURRENT_CONTEXT
            _saved["getattr"] = task_runner.__dict__.get("__getattr__")
            stack = _PerThreadStack()
            for item in _saved["stack"]:
                stack.append(item)
            ctx_module._CURRENT_CONTEXT = exec_context._CURRENT_CONTEXT = stack  # type: ignore[assignment]
            # PEP 562: only consulted while SUPERVISOR_COMMS is not set on the module itself.
            task_runner.__getattr__ = _module_getattr  # type: ignore[attr-defined]
        _install_depth += 1
    try:
        yield
    finally:
        with _install_lock:
            _install_depth -= 1
            if _install_depth == 0:
                ctx_module._CURRENT_CONTEXT = exec_context._CURRENT_CONTEXT = _saved["stack"]
                if _saved["getattr"] is None:
                    task_runner.__dict__.pop("__getattr__", None)
                else:
                    task_runner.__getattr__ = _saved["getattr"]  # type: ignore[attr-defined]


def _module_getattr(name: str) -> Any:
    if name == "SUPERVISOR_COMMS":
        return _active_comms()
    raise AttributeError(name)


class _TaskComms:
    """One task instance's channel to its supervisor, answered in the calling thread."""

    def __init__(self, supervisor: Any):
        import structlog

        self.supervisor = supervisor
        self.messages: deque[Any] = deque()
        self._log = structlog.get_logger(logger_name="task")
        self._lock = threading.Lock()  # threads acting as one task instance take turns on its channel

    def send(self, msg: Any) -> Any:
        # The supervisor's own work (API calls, secrets lookups) is not task code.
        previous, _local.comms = getattr(_local, "comms", None), None
        try:
            with self._lock:
                self.supervisor._handle_request(msg, self._log, 0)
                return self.messages.popleft()
        finally:
            _local.comms = previous

    async def asend(self, msg: Any) -> Any:
        return self.send(msg)


@dataclass
class TaskHandle:
    """One running task instance that threads can act as."""

    dag: Any
    task_id: str
    map_index: int
    run_id: str
    ti_id: UUID
    try_number: int = 0
    ti: Any = None
    context: Any = None
    comms: _TaskComms | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    def start(self) -> TaskHandle:
        """Move the instance to running as a worker does (a new try each call); clear its earlier keys."""
        from airflow.sdk import timezone
        from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        from xcomsim.env import execution_api
        from xcomsim.runner.tasks import sdk_task_instance

        with create_session() as session:
            row = _ti_row(session, self.ti_id)
            row.try_number += 1
            row.state = TaskInstanceState.QUEUED
            session.flush()
            sdk_ti = sdk_task_instance(row)
        self.try_number = sdk_ti.try_number
        client = execution_api.client(self.dag)
        supervisor = InProcessTestSupervisor(
            id=sdk_ti.id, pid=os.getpid(), process=_process(), process_log=_logger(), client=client
        )
        self.comms = _TaskComms(supervisor)
        supervisor.comms = self.comms  # type: ignore[assignment]
        supervisor.ti = sdk_ti  # type: ignore[assignment]
        start_date = timezone.utcnow()
        run_context = client.task_instances.start(sdk_ti.id, supervisor.pid, start_date)
        self.ti = RuntimeTaskInstance.model_construct(
            **sdk_ti.model_dump(exclude_unset=True),
            task=self.dag.task_dict[self.task_id],
            _ti_context_from_server=run_context,
            max_tries=run_context.max_tries,
            start_date=start_date,
            state=TaskInstanceState.RUNNING,
        )
        with self.active():
            self.context = self.ti.get_template_context()
            from airflow.sdk.execution_time.xcom import XCom

            for key in run_context.xcom_keys_to_clear or ():  # as the task runner does on a retry
                XCom.delete(key=key, dag_id=self.dag.dag_id, task_id=self.task_id, run_id=self.run_id,
                            map_index=self.map_index)  # fmt: skip
        return self

    def snapshot(self) -> TaskHandle:
        """This try as it is now: a handle that stays this try when ``start`` moves this one to the next."""
        return dataclasses.replace(self)

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """In this thread, until the block ends, code runs as this task instance's code."""
        if self.comms is None:
            raise RuntimeError(f"task instance {self.label} was not started")
        from airflow.sdk.definitions._internal import contextmanager as ctx_module

        previous = getattr(_local, "comms", None)
        _local.comms = self.comms
        stack = ctx_module._CURRENT_CONTEXT
        stack.append(self.context if self.context is not None else {"ti": self.ti})
        try:
            yield self.ti
        finally:
            stack.pop()
            _local.comms = previous

    def finish(self, state: str = "success") -> None:
        """End this try: ``success``, or ``failed`` (up for retry while tries remain)."""
        from airflow.sdk import timezone
        from airflow.sdk.execution_time.comms import SucceedTask, TaskState

        assert self.comms is not None
        now = timezone.utcnow()
        message = (
            SucceedTask(end_date=now, task_outlets=[], outlet_events=[])
            if state == "success"
            else TaskState(state=state, end_date=now)
        )
        with self.active():
            self.comms.send(message)
        self.comms.supervisor.update_task_state_if_needed()


def start_task_instances(dag: Any, keys: Sequence[tuple[str, int]], conf: dict[str, Any] | None = None) -> list[TaskHandle]:
    """Create a DAG run of ``dag`` and start the task instances ``(task_id, map_index)``."""
    from airflow import settings

    from xcomsim.runner import create_dag_run

    session = settings.Session()
    try:
        dag_run = create_dag_run(dag, session, conf)
        rows = {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances(session=session)}
        missing = [key for key in keys if key not in rows]
        if missing:
            raise KeyError(f"DAG {dag.dag_id} has no task instances {missing} (it has {sorted(rows)})")
        handles = [TaskHandle(dag, t, m, dag_run.run_id, UUID(str(rows[(t, m)].id))) for t, m in keys]
        session.commit()
    finally:
        session.close()
        settings.Session.remove()
    return [handle.start() for handle in handles]


def _ti_row(session: Any, ti_id: UUID) -> Any:
    from airflow.models.taskinstance import TaskInstance

    from xcomsim.compat.models import task_instance_key

    return session.get(TaskInstance, task_instance_key(ti_id))


def _process() -> Any:
    import psutil

    return psutil.Process()


def _logger() -> Any:
    import structlog

    return structlog.get_logger(logger_name="task").bind()
