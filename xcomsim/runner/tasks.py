"""Running one task instance: in this process (with its triggers) or in a real worker process."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from xcomsim.env import execution_api
from xcomsim.errors import ConfigError
from xcomsim.noise import user_line
from xcomsim.runner.clock import Deadline, RunTimeout, VirtualClock, run_coroutine
from xcomsim.runner.store import BUNDLE_NAME


@dataclass
class RunContext:
    """What every task of one ``run_dag`` call shares."""

    deadline: Deadline
    clock: VirtualClock
    # Called before a trigger runs: lets other DAG runs (a triggered run the trigger waits on) progress first.
    before_trigger: Callable[[], None] = lambda: None
    # What was running when the run timeout struck, for the error message.
    current: str = ""


def sdk_task_instance(ti: Any) -> Any:
    from airflow.sdk.api.datamodels._generated import TaskInstance as SDKTaskInstance

    return SDKTaskInstance(
        id=UUID(str(ti.id)),
        task_id=ti.task_id,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        try_number=ti.try_number,
        map_index=ti.map_index,
        dag_version_id=UUID(str(ti.dag_version_id)),
    )


def run_in_process(ti: Any, task: Any, ctx: RunContext) -> BaseException | None:
    """Run one task instance as ``dag.test()`` does; return the exception it failed with, if any.

    A deferred task's trigger runs inline on the virtual clock, bounded by the
    trigger's own timeout (as the scheduler's trigger-timeout check would) and by
    the run timeout. Its event reaches the task through Airflow's own
    ``handle_event_submit``; a trigger that raises fails the task as the triggerer's
    ``submit_failure`` does (the task resumes to fail, with the trigger's traceback).
    """
    from airflow.sdk.execution_time.comms import DeferTask
    from airflow.utils.session import create_session
    from airflow.utils.state import State, TaskInstanceState

    from xcomsim.compat.names import deserialize
    from xcomsim.compat.supervisor import run_task_in_process

    while True:
        ti.set_state(TaskInstanceState.QUEUED)
        sdk_ti = sdk_task_instance(ti)
        try:
            with ctx.deadline.armed():
                result = run_task_in_process(sdk_ti, task, execution_api.client(task.dag))
        except RunTimeout as exc:
            _fail_if_unfinished(ti)
            ctx.current += _struck_at(exc)
            raise
        except Exception as exc:  # the harness's own path failed, not the task
            if ti.state not in State.finished:
                ti.set_state(TaskInstanceState.FAILED)
            return exc
        if isinstance(result.error, (RunTimeout, KeyboardInterrupt)):
            ctx.current += _struck_at(result.error)
            raise result.error  # the task runner records an interrupt as the task's failure; it is the run's
        ti.set_state(result.ti.state)
        if ti.state == TaskInstanceState.DEFERRED and isinstance(result.msg, DeferTask):
            ti.set_state(TaskInstanceState.QUEUED)
            msg = result.msg
            from xcomsim.compat.names import import_string

            trigger = import_string(msg.classpath)(**deserialize(msg.trigger_kwargs))
            ctx.before_trigger()
            ctx.current = f"the trigger of {ti.task_id} ({msg.classpath})"
            timeout = msg.trigger_timeout.total_seconds() if msg.trigger_timeout is not None else None
            failure: Exception | None = None
            try:
                fired, event = _run_trigger(trigger, sdk_ti, timeout, ctx)
            except Exception as exc:  # the trigger crashed: as the triggerer does, the task resumes only to fail
                fired, event, failure = False, None, exc
            with create_session() as session:
                session.add(ti)
                if failure is not None:
                    from traceback import format_exception

                    from airflow.models.trigger import TRIGGER_FAIL_REPR, TriggerFailureReason

                    ti.next_method = TRIGGER_FAIL_REPR
                    ti.next_kwargs = {"error": TriggerFailureReason.TRIGGER_FAILURE,
                                      "traceback": format_exception(type(failure), failure, failure.__traceback__)}  # fmt: skip
                    ti.state = TaskInstanceState.SCHEDULED
                elif fired and event is not None:
                    from airflow.models.trigger import handle_event_submit

                    # As the triggerer hands an event over: Airflow's own code adds it to the kwargs the
                    # deferral stored, encoded as the installed Airflow stores them.
                    session.refresh(ti)
                    handle_event_submit(event, task_instance=ti, session=session)
                else:
                    from airflow.models.trigger import TRIGGER_FAIL_REPR, TriggerFailureReason

                    ti.next_method = msg.next_method if fired else TRIGGER_FAIL_REPR
                    ti.next_kwargs = msg.next_kwargs if fired else {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
                    ti.state = TaskInstanceState.SCHEDULED
            if ti.state in State.finished:  # the trigger ended the task itself (a task end event)
                return None
            continue
        return result.error


def _struck_at(exc: BaseException) -> str:
    where = user_line(exc)
    return f" at {where}" if where else ""


def _fail_if_unfinished(ti: Any) -> None:
    from airflow.utils.state import State, TaskInstanceState

    try:
        ti.refresh_from_db()
        if ti.state not in State.finished:
            ti.set_state(TaskInstanceState.FAILED)
    except Exception:
        pass


def _run_trigger(trigger: Any, sdk_ti: Any, timeout: float | None, ctx: RunContext) -> tuple[bool, Any]:
    """(fired, first event); ``fired`` is False when the trigger's timeout passed first."""
    import asyncio

    import psutil
    import structlog

    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
        set_supervisor_comms,
    )

    supervisor = InProcessTestSupervisor(
        id=sdk_ti.id,
        pid=psutil.Process().pid,
        process=psutil.Process(),
        process_log=structlog.get_logger(logger_name="task").bind(),
        client=execution_api.client(),
    )
    supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)

    async def first_event() -> tuple[bool, Any]:
        try:
            return True, await asyncio.wait_for(anext(trigger.run(), None), timeout)
        except asyncio.TimeoutError:
            return False, None

    with set_supervisor_comms(supervisor.comms), ctx.deadline.armed():
        return run_coroutine(ctx.clock, first_event())


class TaskProcessError(Exception):
    """A task failed in a worker process; only its exception's type name and message came back."""

    def __init__(self, exc_type: str, message: str):
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message


class WorkerProcess:
    """Runs a task instance through Airflow's real supervisor and a forked task process."""

    def __init__(self, dag: Any, log_dir: Path):
        from airflow import settings

        self.dag = dag
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(settings.DAGS_FOLDER).resolve()
        fileloc = Path(dag.fileloc).resolve()
        if not fileloc.is_relative_to(folder):
            raise ConfigError(
                f"worker_process=True runs DAG files from the dags folder ({folder}); "
                f"DAG {dag.dag_id!r} comes from {fileloc}"
            )
        self.rel_path = fileloc.relative_to(folder)

    def __call__(self, ti: Any, task: Any, ctx: RunContext) -> BaseException | None:
        from airflow.sdk.api.datamodels._generated import BundleInfo
        from airflow.utils.state import TaskInstanceState

        from xcomsim.compat.names import supervise_task

        ti.set_state(TaskInstanceState.QUEUED)
        log_path = self.log_dir / f"{ti.dag_id}.{ti.task_id}.{ti.map_index}.{ti.try_number}.{ti.id}.log"
        with ctx.deadline.armed():
            supervise_task(
                ti=sdk_task_instance(ti),
                bundle_info=BundleInfo(name=BUNDLE_NAME, version=None),
                dag_rel_path=self.rel_path,
                token="",
                client=execution_api.client(self.dag),
                log_path=str(log_path),
            )
        failure = _failure_from_log(log_path)
        if _heartbeat_timed_out(ti, ctx):
            return TaskProcessError("TaskProcessKilled", "the task process died without reporting a state")
        return failure


def _heartbeat_timed_out(ti: Any, ctx: RunContext) -> bool:
    """A task process that died without a word (SIGKILL, OOM) leaves its task instance running; Airflow's
    scheduler fails it once its heartbeat is ``[scheduler] task_instance_heartbeat_timeout`` old (then it is
    up for retry while tries remain). So does this, after that much time on the run's clock."""
    from airflow.configuration import conf
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        row = session.get(type(ti), ti.id)
        if row is None or row.state != TaskInstanceState.RUNNING:
            return False
        ctx.clock.sleep(conf.getfloat("scheduler", "task_instance_heartbeat_timeout", fallback=300.0))
        row.handle_failure("the task instance's heartbeat timed out: its process died", session=session)
    return True


def _failure_from_log(log_path: Path) -> TaskProcessError | None:
    """The exception a task process logged when it failed, from its structured log."""
    if not log_path.exists():
        return None
    for line in reversed(log_path.read_text().splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        details = event.get("error_detail") if isinstance(event, dict) else None
        if details:
            last = details[-1] if isinstance(details, list) else details
            return TaskProcessError(str(last.get("exc_type", "Exception")), str(last.get("exc_value", "")))
    return None
