"""Running one real DAG through Airflow's in-process execution path.

This is ``dag.test()``'s machinery (the scheduler's ``DagRun.update_state`` to pick
ready task instances, ``run_task_in_process`` to run each one through the task
runner, the supervisor and the Execution API) without its per-call bundle sync,
which re-parses the whole dags folder on every run. Differences from ``dag.test()``,
each because a test must end and must say why:

- scheduling passes repeat until one changes nothing (a fixed point); only then is
  the run "stuck", and the error names every waiting task and the first failure;
- the run timeout bounds task code, triggers and sensor waits (``Deadline``);
- waits that only pass time (a retry's ``retry_delay``, reschedules, time-based
  triggers, poke-mode sleeps) are skipped on a ``VirtualClock`` unless
  ``time_travel=False``: a retry starts when Airflow would start it, after its
  ``retry_delay`` on the world's clock, which everything in the process reads
  (the backend and its clients too), without the wait;
- a trigger's own timeout fails the task as the scheduler would;
- runs the DAG starts in other DAGs (``TriggerDagRunOperator``) are run too.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from xcomsim.errors import ConfigError, DagRunStuckError
from xcomsim.runner.clock import Deadline, RunTimeout, VirtualClock
from xcomsim.runner.result import DagRunResult, TaskOutcome, XComRecord, _label
from xcomsim.runner.store import file_siblings, reaches_other_dags, store_dags
from xcomsim.runner.tasks import RunContext, WorkerProcess, run_in_process

_DONE = {"success", "failed", "skipped", "upstream_failed", "removed"}


def run_dag(
    dag: Any,
    *,
    backend: type,
    conf: Mapping[str, Any] | None = None,
    logical_date: datetime | None = None,
    timeout: float = 300.0,
    worker_process: bool = False,
    log_dir: Path | None = None,
    dags: Iterable[Any] | Callable[[], Iterable[Any]] = (),
    time_travel: bool = True,
    run_triggered: bool = True,
) -> DagRunResult:
    """Run ``dag`` once to completion in the current (already installed) environment.

    When the DAG can reach another one (it triggers or senses a DAG, or uses
    assets), ``dags`` (the dags folder's) are stored alongside it, as are the DAGs of
    its own file, so runs it triggers, assets and sensors on other DAGs find them.
    ``time_travel`` skips waits that only pass time; ``run_triggered`` runs the DAG
    runs this one starts and reports them in ``result.triggered``.

    ``worker_process=True`` runs every task the way a real worker does: Airflow's
    supervisor forks a task process that parses the DAG file from the dags-folder
    bundle and talks to the supervisor over a socket (the supervisor still uses the
    in-process Execution API). The DAG must come from the dags folder then.
    """
    from airflow import settings
    from airflow.sdk import DAG

    if not isinstance(dag, DAG):
        raise ConfigError(f"run_dag needs an airflow.sdk.DAG or a DAG id, got {type(dag).__name__}: {dag!r}")
    _warm_up_execution_api()
    runner: Any = WorkerProcess(dag, log_dir or Path(tempfile.mkdtemp())) if worker_process else run_in_process
    started = time.perf_counter()
    deadline = Deadline(timeout)  # restarted once the run exists: storing DAGs is not the run
    clock = VirtualClock(deadline, travel=time_travel)
    if reaches_other_dags(dag):
        folder = dags() if callable(dags) else dags
        known = {d.dag_id: d for d in [*folder, *file_siblings(dag)]}
    else:
        known = {}
    known[dag.dag_id] = dag
    session = settings.Session()
    try:
        with clock.installed():
            dag_run = create_dag_run(dag, session, conf, logical_date, others=known.values())
            deadline.restart()
            runs = _Runs(session, known, runner, RunContext(deadline, clock), dag_run.id, run_triggered)
            result = runs.run(dag, dag_run, backend)
            if run_triggered:
                result.triggered = runs.run_others(backend)
    finally:
        session.close()
        settings.Session.remove()
    result.skipped_seconds = clock.skipped
    result.seconds = time.perf_counter() - started
    return result


_warm = False


def _warm_up_execution_api() -> None:
    """Build the in-process Execution API app before the run timeout starts.

    Its first request generates every API version's routes, which takes seconds
    (tens under load); that one-off cost must not count against the first run.
    """
    global _warm
    if _warm:
        return
    from xcomsim.env import execution_api
    from xcomsim.env.heap import long_lived_startup

    with long_lived_startup():
        try:
            execution_api.client().get("health")
            import airflow.sdk.execution_time.task_runner  # noqa: F401  every run's task runner
        except Exception:  # only a warm-up: the run itself reports what is wrong
            pass
    _warm = True


def create_dag_run(dag: Any, session: Any, conf: Mapping[str, Any] | None = None,
                   logical_date: datetime | None = None, others: Iterable[Any] = ()) -> Any:  # fmt: skip
    """Store ``dag`` (and ``others``) as the DAG processor would and create a manual run of it."""
    from airflow.models.dagrun import DagRun, get_or_create_dagrun
    from airflow.sdk import timezone
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    from xcomsim.compat.names import DagSerialization

    dag.validate()
    scheduler_dag = DagSerialization.from_dict(store_dags(dag, others, session))
    # dag.test() does the same: callbacks are lost in serialisation.
    scheduler_dag.on_success_callback = dag.on_success_callback
    scheduler_dag.on_failure_callback = dag.on_failure_callback
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


class _Runs:
    """The DAG runs of one ``run_dag`` call: the one asked for and any it started."""

    def __init__(self, session: Any, dags: dict[str, Any], runner: Any, ctx: RunContext, main_run_pk: int,
                 run_triggered: bool):  # fmt: skip
        self.session = session
        self.main_run_pk = main_run_pk  # runs created after this one were started by this call
        self.dags = dags
        self.runner = runner
        self.ctx = ctx
        self.done: set[tuple[str, str]] = set()
        self.finished: list[tuple[Any, Any, dict]] = []
        self.active: set[tuple[str, str]] = set()
        if run_triggered:
            ctx.before_trigger = self._progress_others

    def run(self, dag: Any, dag_run: Any, backend: type) -> DagRunResult:
        errors = self._drive(dag, dag_run)
        return _result(dag, dag_run, errors, self.session, backend)

    def _drive(self, dag: Any, dag_run: Any) -> dict[tuple[str, int], BaseException | None]:
        key = (dag_run.dag_id, dag_run.run_id)
        self.active.add(key)
        try:
            return _drive(dag, dag_run, self.session, self.runner, self.ctx)
        except RunTimeout:
            raise DagRunStuckError(_timeout_message(dag, dag_run, self.session, self.ctx)) from None
        finally:
            self.active.discard(key)
            self.done.add(key)

    def _pending(self) -> list[Any]:
        """Runs of known DAGs that something created during this call and nobody has run yet."""
        from sqlalchemy import select

        from airflow.models.dagrun import DagRun
        from airflow.utils.state import DagRunState

        self.session.expire_all()
        runs = self.session.scalars(
            select(DagRun)
            .where(DagRun.id > self.main_run_pk, DagRun.state.in_([DagRunState.QUEUED, DagRunState.RUNNING]))
            .order_by(DagRun.id)
        ).all()
        self.session.commit()
        return [
            r for r in runs
            if r.dag_id in self.dags and (r.dag_id, r.run_id) not in self.done | self.active
        ]  # fmt: skip

    def _progress_others(self) -> None:
        """Before a trigger waits (perhaps on another DAG's run), run whatever runs are waiting to be run."""
        while pending := self._pending():  # queried afresh: running a DAG closes the scoped session
            dag_run = pending[0]
            self._start(dag_run)
            errors = self._drive(self.dags[dag_run.dag_id], dag_run)
            self.finished.append((self.dags[dag_run.dag_id], dag_run, errors))

    def run_others(self, backend: type) -> list[DagRunResult]:
        self._progress_others()
        return [_result(dag, dag_run, errors, self.session, backend) for dag, dag_run, errors in self.finished]

    def _start(self, dag_run: Any) -> None:
        """What the scheduler does to a queued run: attach its DAG and set it running."""
        from airflow.sdk import timezone
        from airflow.utils.state import DagRunState

        from xcomsim.compat.names import DagSerialization

        dag_run.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(self.dags[dag_run.dag_id]))
        if dag_run.state == DagRunState.QUEUED:
            dag_run.state = DagRunState.RUNNING
            dag_run.start_date = timezone.utcnow()
            self.session.commit()


def _drive(dag: Any, dag_run: Any, session: Any, runner: Any, ctx: RunContext) -> dict[tuple[str, int], BaseException | None]:
    """Schedule and run task instances until the run ends or a pass changes nothing."""
    from airflow.utils.state import DagRunState, TaskInstanceState

    errors: dict[tuple[str, int], BaseException | None] = {}
    unchanged: Any = None
    while True:
        ctx.deadline.check()
        session.expire_all()
        schedulable, _ = dag_run.update_state(session=session)
        for ti in schedulable:
            if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        if dag_run.state != DagRunState.RUNNING:
            return errors
        tis = dag_run.get_task_instances(session=session)
        ready = [ti for ti in tis if ti.state == TaskInstanceState.SCHEDULED]
        session.commit()  # no connection is held while tasks run: the Execution API needs it
        if not ready:
            if _wait_for_retry(dag, tis, ctx) or _wait_for_reschedule(tis, session, ctx):
                continue
            snapshot = (str(dag_run.state), sorted((t.task_id, t.map_index, str(t.state)) for t in tis))
            if snapshot == unchanged:
                raise DagRunStuckError(_stuck_message(dag, tis, errors))
            unchanged = snapshot
            continue
        unchanged = None
        for ti in _in_run_order(dag, ready):
            ctx.deadline.check()
            ctx.current = f"task {_label(ti.task_id, ti.map_index)}"
            errors[(ti.task_id, ti.map_index)] = runner(ti, dag.task_dict[ti.task_id], ctx)
            ctx.current = ""


def _in_run_order(dag: Any, ready: list[Any]) -> list[Any]:
    """Sensors last, the rest in the order the DAG defines them.

    Airflow would start these together; run one at a time, a sensor waiting on a
    side effect of a task that is ready alongside it (a file, a row) finds it done.
    """
    from airflow.sdk.bases.sensor import BaseSensorOperator

    position = {task_id: i for i, task_id in enumerate(dag.task_dict)}
    return sorted(
        ready,
        key=lambda ti: (
            isinstance(dag.task_dict.get(ti.task_id), BaseSensorOperator),
            position.get(ti.task_id, len(position)),
            ti.map_index,
        ),
    )


def _wait_for_retry(dag: Any, tis: list[Any], ctx: RunContext) -> bool:
    """Bring the earliest retry of a task instance up for retry to now: its ``retry_delay`` passes.

    The scheduler's next pass then finds it out of its retry period and schedules it, as Airflow's does.
    """
    from airflow.utils.state import TaskInstanceState

    waiting = [ti for ti in tis if ti.state == TaskInstanceState.UP_FOR_RETRY]
    if not waiting:
        return False
    for ti in waiting:
        if getattr(ti, "task", None) is None and ti.task_id in dag.task_dict:
            ti.task = dag.task_dict[ti.task_id]
    earliest = min(ti.next_retry_datetime() for ti in waiting)
    if ctx.clock.travel:
        ctx.clock.advance_to(earliest + timedelta(milliseconds=1))
    else:
        ctx.clock.sleep(max(0.0, (earliest - ctx.clock.now()).total_seconds()) + 0.01)
    return True


def _wait_for_reschedule(tis: list[Any], session: Any, ctx: RunContext) -> bool:
    """Bring the earliest sensor reschedule date to now (skipping, or sleeping if time travel is off)."""
    from sqlalchemy import func, select

    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.state import TaskInstanceState

    waiting = [ti.id for ti in tis if ti.state == TaskInstanceState.UP_FOR_RESCHEDULE]
    if not waiting:
        return False
    latest = (
        select(TaskReschedule.ti_id, func.max(TaskReschedule.id).label("id"))
        .where(TaskReschedule.ti_id.in_(waiting))
        .group_by(TaskReschedule.ti_id)
        .subquery()
    )
    dates = session.scalars(select(TaskReschedule.reschedule_date).join(latest, TaskReschedule.id == latest.c.id)).all()
    session.commit()
    if not dates:
        return False
    earliest = min(dates)
    if ctx.clock.travel:
        ctx.clock.advance_to(earliest)
    else:
        ctx.clock.sleep(max(0.0, (earliest - ctx.clock.now()).total_seconds()) + 0.01)
    return True


def _result(dag: Any, dag_run: Any, errors: dict, session: Any, backend: type) -> DagRunResult:
    return DagRunResult(
        dag_id=dag.dag_id,
        run_id=dag_run.run_id,
        state=str(dag_run.state),
        tasks=_final_outcomes(dag_run, errors, session),
        xcoms=read_xcoms(session, backend, dag.dag_id, dag_run.run_id),
    )


def _final_outcomes(dag_run: Any, errors: dict, session: Any) -> list[TaskOutcome]:
    session.expire_all()
    tis = sorted(dag_run.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index))
    session.commit()
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


def read_xcoms(session: Any, backend: type, dag_id: str, run_id: str) -> list[XComRecord]:
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
    session.commit()
    records = []
    for task_id, map_index, key, stored in rows:
        try:
            value = backend.deserialize_value(XComResult(key=key, value=stored))
            records.append(XComRecord(task_id, map_index, key, stored, value))
        except Exception as exc:
            records.append(XComRecord(task_id, map_index, key, stored, error=f"{type(exc).__name__}: {exc}"))
    return records


def _first_failure(errors: dict) -> str:
    for (task_id, map_index), error in errors.items():
        if error is not None:
            return f"; first failure: {_label(task_id, map_index)}: {type(error).__name__}: {error}"
    return ""


def _stuck_message(dag: Any, tis: list[Any], errors: dict) -> str:
    waiting = ", ".join(
        f"{_label(t.task_id, t.map_index)}={t.state}" for t in tis if str(t.state) not in _DONE
    )  # fmt: skip
    return (
        f"DAG {dag.dag_id} cannot progress: a scheduling pass changed nothing and no task instance "
        f"is ready; waiting: {waiting or 'none'}{_first_failure(errors)}"
    )


def _timeout_message(dag: Any, dag_run: Any, session: Any, ctx: RunContext) -> str:
    try:
        session.rollback()
        session.expire_all()
        tis = dag_run.get_task_instances(session=session)
        session.commit()
        waiting = ", ".join(f"{_label(t.task_id, t.map_index)}={t.state}" for t in tis if str(t.state) not in _DONE)
    except Exception as exc:  # the message must not hide the timeout
        waiting = f"(task states unreadable: {type(exc).__name__})"
    running = f"; interrupted {ctx.current}" if ctx.current else ""
    return (
        f"DAG {dag.dag_id} did not finish within the run timeout of {ctx.deadline.seconds:g}s{running}; "
        f"unfinished: {waiting or 'none'}"
    )
