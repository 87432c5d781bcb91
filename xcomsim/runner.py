"""Running one real DAG through Airflow's in-process execution path.

This is ``dag.test()``'s machinery (the scheduler's ``DagRun.update_state`` to pick
ready task instances, ``run_task_in_process`` to run each one through the task
runner, the supervisor and the Execution API) without its per-call bundle sync,
which re-parses the whole dags folder on every run. The DAG object is serialised
into the per-test metadata DB directly, so a DAG defined inline in a test module
runs as well as one from the dags folder. Unlike ``dag.test()``, each task's
exception is kept, retries happen at once instead of after ``retry_delay``, and
a run that cannot progress raises instead of sleeping forever.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from xcomsim.errors import ConfigError, DagRunStuckError

BUNDLE_NAME = "dags-folder"


@dataclass(frozen=True)
class XComRecord:
    """One row of the ``xcom`` table after the run, and what the backend made of it."""

    task_id: str
    map_index: int
    key: str
    stored: Any
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    error: BaseException | None = None


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    tasks: list[TaskOutcome] = field(default_factory=list)
    xcoms: list[XComRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    @property
    def task_states(self) -> dict[str, str | None]:
        """``task_id`` (``task_id[i]`` for map index ``i``) -> final state."""
        return {_label(t.task_id, t.map_index): t.state for t in self.tasks}

    def task(self, task_id: str, map_index: int = -1) -> TaskOutcome:
        for outcome in self.tasks:
            if outcome.task_id == task_id and outcome.map_index == map_index:
                return outcome
        raise KeyError(f"no task instance {_label(task_id, map_index)} in run {self.run_id}")

    def error(self, task_id: str, map_index: int = -1) -> BaseException | None:
        return self.task(task_id, map_index).error

    def record(self, task_id: str, key: str = "return_value", map_index: int = -1) -> XComRecord:
        for record in self.xcoms:
            if (record.task_id, record.key, record.map_index) == (task_id, key, map_index):
                return record
        raise KeyError(f"no XCom {key!r} of {_label(task_id, map_index)} in run {self.run_id}")

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The deserialised value, as a downstream task would pull it."""
        record = self.record(task_id, key, map_index)
        if record.error is not None:
            raise ValueError(f"XCom {key!r} of {task_id} could not be deserialised: {record.error}")
        return record.value

    def describe(self) -> str:
        lines = [f"DAG {self.dag_id} run {self.run_id}: {self.state} in {self.seconds:.2f}s"]
        for t in self.tasks:
            err = f"  {type(t.error).__name__}: {t.error}" if t.error else ""
            lines.append(f"  {_label(t.task_id, t.map_index)}: {t.state} (try {t.try_number}){err}")
        return "\n".join(lines)


def _label(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def run_dag(
    dag: Any,
    *,
    backend: type,
    conf: Mapping[str, Any] | None = None,
    logical_date: datetime | None = None,
    timeout: float = 300.0,
    worker_process: bool = False,
    log_dir: Path | None = None,
) -> DagRunResult:
    """Run ``dag`` once to completion in the current (already installed) environment.

    ``worker_process=True`` runs every task the way a real worker does: Airflow's
    supervisor forks a task process that parses the DAG file from the dags-folder
    bundle and talks to the supervisor over a socket (the supervisor still uses the
    in-process Execution API). The DAG must come from the dags folder then.
    """
    from airflow import settings
    from airflow.sdk import DAG

    if not isinstance(dag, DAG):
        raise ConfigError(f"run_dag needs an airflow.sdk.DAG or a DAG id, got {type(dag).__name__}: {dag!r}")
    if worker_process:
        runner: Callable[[Any, Any], BaseException | None] = _WorkerProcess(dag, log_dir or Path(tempfile.mkdtemp()))
    else:
        runner = _run_task
    started = time.perf_counter()
    session = settings.Session()
    try:
        dag_run, outcomes = _execute(dag, session, conf, logical_date, started + timeout, runner)
        result = DagRunResult(
            dag_id=dag.dag_id,
            run_id=dag_run.run_id,
            state=str(dag_run.state),
            tasks=_final_outcomes(dag_run, outcomes, session),
            xcoms=read_xcoms(session, backend, dag.dag_id, dag_run.run_id),
        )
    finally:
        session.close()
        settings.Session.remove()
    result.seconds = time.perf_counter() - started
    return result


def create_dag_run(dag: Any, session: Any, conf: Mapping[str, Any] | None = None,
                   logical_date: datetime | None = None) -> Any:  # fmt: skip
    """Store ``dag`` as the DAG processor would and create a manual run of it (task instances included)."""
    from airflow.models.dagrun import DagRun, get_or_create_dagrun
    from airflow.sdk import timezone
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    dag.validate()
    _write_serialized(dag, session)
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    now = timezone.utcnow()
    logical_date = timezone.coerce_datetime(logical_date) if logical_date else now
    return get_or_create_dagrun(
        dag=scheduler_dag,
        start_date=now,
        logical_date=logical_date,
        data_interval=None,
        run_after=now,
        run_id=DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=logical_date, run_after=now),
        session=session,
        conf=dict(conf or {}),
        triggered_by=DagRunTriggeredByType.TEST,
        triggering_user_name="xcomsim",
    )


def _execute(dag, session, conf, logical_date, deadline, run_task):
    from airflow.utils.state import DagRunState, TaskInstanceState

    dag_run = create_dag_run(dag, session, conf, logical_date)
    outcomes: dict[tuple[str, int], BaseException | None] = {}
    while dag_run.state == DagRunState.RUNNING:
        session.expire_all()
        schedulable, _ = dag_run.update_state(session=session)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        all_tis = dag_run.get_task_instances(session=session)
        ready = [ti for ti in all_tis if ti.state == TaskInstanceState.SCHEDULED]
        if not ready:
            # Retry at once: waiting out retry_delay only slows tests down.
            ready = [ti for ti in all_tis if ti.state == TaskInstanceState.UP_FOR_RETRY]
            for ti in ready:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
        if not ready and dag_run.state == DagRunState.RUNNING:
            session.expire_all()
            dag_run.update_state(session=session)
            session.commit()
            if dag_run.state == DagRunState.RUNNING:
                raise DagRunStuckError(_stuck_message(dag, all_tis))
        for ti in ready:
            if time.perf_counter() > deadline:
                raise DagRunStuckError(f"DAG {dag.dag_id} did not finish within the run timeout")
            outcomes[(ti.task_id, ti.map_index)] = run_task(ti, dag.task_dict[ti.task_id])
    return dag_run, outcomes


def _write_serialized(dag, session) -> None:
    """Store the DAG as the DAG processor would, so the scheduler code can find it."""
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    update_dag_parsing_results_in_db(
        BUNDLE_NAME, None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
    )
    session.commit()


def _sdk_task_instance(ti) -> Any:
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


class TaskProcessError(Exception):
    """A task failed in a worker process; only its exception's type name and message came back."""

    def __init__(self, exc_type: str, message: str):
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message


class _WorkerProcess:
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

    def __call__(self, ti: Any, task: Any) -> BaseException | None:
        from airflow.sdk.api.datamodels._generated import BundleInfo
        from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor, supervise_task
        from airflow.utils.state import TaskInstanceState

        ti.set_state(TaskInstanceState.QUEUED)
        log_path = self.log_dir / f"{ti.dag_id}.{ti.task_id}.{ti.map_index}.{ti.try_number}.{ti.id}.log"
        supervise_task(
            ti=_sdk_task_instance(ti),
            bundle_info=BundleInfo(name=BUNDLE_NAME, version=None),
            dag_rel_path=self.rel_path,
            token="",
            client=InProcessTestSupervisor._api_client(self.dag),
            log_path=str(log_path),
        )
        return _failure_from_log(log_path)


def _failure_from_log(log_path: Path) -> TaskProcessError | None:
    """The exception a task process logged when it failed, from its structured log."""
    import json

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


def _run_task(ti, task) -> BaseException | None:
    """Run one task instance in-process; return the exception it failed with, if any."""
    from airflow.sdk.definitions.dag import _run_inline_trigger
    from airflow.sdk.execution_time.comms import DeferTask
    from airflow.sdk.execution_time.supervisor import run_task_in_process
    from airflow.sdk.serde import deserialize, serialize
    from airflow.utils.session import create_session
    from airflow.utils.state import State, TaskInstanceState

    while True:
        ti.set_state(TaskInstanceState.QUEUED)
        sdk_ti = _sdk_task_instance(ti)
        try:
            result = run_task_in_process(ti=sdk_ti, task=task)
        except Exception as exc:  # the harness's own path failed, not the task
            if ti.state not in State.finished:
                ti.set_state(TaskInstanceState.FAILED)
            return exc
        ti.set_state(result.ti.state)
        if ti.state == TaskInstanceState.DEFERRED and isinstance(result.msg, DeferTask):
            ti.set_state(TaskInstanceState.QUEUED)
            from airflow.sdk._shared.module_loading import import_string

            trigger = import_string(result.msg.classpath)(**deserialize(result.msg.trigger_kwargs))
            event = _run_inline_trigger(trigger, sdk_ti)
            ti.next_method = result.msg.next_method
            ti.next_kwargs = {"event": serialize(event.payload)} if event else result.msg.next_kwargs
            with create_session() as session:
                ti.state = TaskInstanceState.SCHEDULED
                session.add(ti)
            continue
        return result.error


def _final_outcomes(dag_run, errors, session) -> list[TaskOutcome]:
    session.expire_all()
    tis = sorted(dag_run.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index))
    return [
        TaskOutcome(
            task_id=ti.task_id,
            map_index=ti.map_index,
            state=None if ti.state is None else str(ti.state),
            try_number=ti.try_number,
            error=errors.get((ti.task_id, ti.map_index)),
        )
        for ti in tis
    ]


def read_xcoms(session, backend: type, dag_id: str, run_id: str) -> list[XComRecord]:
    """Every ``xcom`` row of the run, as stored, with the backend's deserialised value."""
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.sdk.execution_time.comms import XComResult

    table = XComModel.__table__
    rows = session.execute(
        select(table.c.task_id, table.c.map_index, table.c.key, table.c.value)
        .where(table.c.dag_id == dag_id, table.c.run_id == run_id)
        .order_by(table.c.task_id, table.c.map_index, table.c.key)
    ).all()
    records = []
    for task_id, map_index, key, stored in rows:
        try:
            value = backend.deserialize_value(XComResult(key=key, value=stored))
            records.append(XComRecord(task_id, map_index, key, stored, value))
        except Exception as exc:
            records.append(XComRecord(task_id, map_index, key, stored, error=f"{type(exc).__name__}: {exc}"))
    return records


def _stuck_message(dag, tis) -> str:
    waiting = ", ".join(f"{_label(t.task_id, t.map_index)}={t.state}" for t in tis if t.state not in _DONE)
    return f"DAG {dag.dag_id} cannot progress: no task instance is ready; waiting: {waiting or 'none'}"


_DONE = {"success", "failed", "skipped", "upstream_failed", "removed"}
