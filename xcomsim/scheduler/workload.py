"""Running a workload (a list of operations per worker) under the scheduler, into a history.

Every worker acts as the same task instance, the way a duplicated or zombie
execution of one task instance would: their pushes race for the same XCom
coordinates, a ``Retry`` by any of them starts the next try of that instance,
and claims race for the same claim ids.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from xcomsim.scheduler.faults import FaultPlan, WorkerCrash as _Crashed, injecting
from xcomsim.scheduler.scheduler import Chooser, Scheduler, Timeline, first_runnable
from xcomsim.strategies import Claim, Crash, Delete, Operation, Pull, Push, Release, Retry, Sweep, Takeover, Wait

WORKLOAD_DAG_ID = "xcomsim_workload"
WORKLOAD_TASK_ID = "worker"


@dataclass(frozen=True)
class Step:
    """One finished operation: who, what, and how it ended (``error`` is the exception's text).

    ``index`` is the finish order; ``start``/``end`` place the operation on one
    sequence shared by all workers, so checks can tell overlapping operations
    from ordered ones; ``clock`` is the workload clock when it started.
    """

    index: int
    worker: str
    op: Operation
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    start: int = 0
    end: int = 0
    clock: float = 0.0
    finished_at: float = 0.0
    attempt: int = 0  # the try of the task instance the worker acted as

    def __str__(self) -> str:
        outcome = f"-> {self.error_type}: {self.error}" if self.error else f"-> {self.result!r}"
        return f"#{self.index} {self.worker} (try {self.attempt}): {self.op} {outcome}"


@dataclass
class History:
    steps: list[Step] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)
    crashed: set[str] = field(default_factory=set)
    run_id: str = ""
    faults: FaultPlan | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    _sequence: int = 0

    def tick(self) -> int:
        """The next number on the shared sequence (an operation's start or end)."""
        with self._lock:
            self._sequence += 1
            return self._sequence

    def add(self, worker: str, op: Operation, now: Callable[[], float] = time.time, **outcome: Any) -> None:
        end, finished_at = self.tick(), now()
        with self._lock:
            self.steps.append(Step(len(self.steps), worker, op, end=end, finished_at=finished_at, **outcome))

    def describe(self) -> str:
        text = "\n".join(str(s) for s in self.steps) + "\n\ninterleaving:\n" + self.timeline.describe()
        if self.faults is not None:
            text += "\n\nfaults injected:\n" + self.faults.describe()
        return text


def workload_dag(dag_id: str = WORKLOAD_DAG_ID, retries: int = 100) -> Any:
    """A one-task DAG whose task instance the workers impersonate."""
    from airflow.sdk import DAG, task

    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task(task_id=WORKLOAD_TASK_ID, retries=retries)
        def worker() -> None:
            return None

        worker()
    return dag


class ManualClock:
    """A clock that moves only when told (``Wait`` operations): leases expire on cue, not on load."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def run_workload(
    workload: Sequence[Sequence[Operation]],
    *,
    dag: Any,
    claim_store: Any = None,
    chooser: Chooser = first_runnable,
    max_preemptions: int = 3,
    handle: Any = None,
    clock: ManualClock | None = None,
    faults: FaultPlan | None = None,
    sweeper: Callable[[], Any] | None = None,
) -> History:
    """Run each worker's operations under the scheduler, as ``handle``'s task instance.

    Without ``handle`` a new run of ``dag`` is started (fresh XCom coordinates);
    passing one saves that cost when the workload uses fresh keys instead.
    ``clock`` is the claim store's ``ManualClock`` (``Wait`` moves it; without
    one a ``Wait`` sleeps and leases run on real time); ``faults``
    a ``FaultPlan`` applied to each worker's I/O (see ``xcomsim.scheduler.faults``);
    ``sweeper`` what a ``Sweep`` operation runs (the backend's garbage collector).
    The world's clock runs (``xcomsim.env.clock``) when a fault moves time; the
    history is stamped with its unskewed time, as a server every worker trusts would.
    """
    from xcomsim.env.clock import WORLD
    from xcomsim.task_context import start_task_instances, thread_local_task_state

    history = History()
    world = WORLD.running() if faults is not None and faults.moves_time else contextlib.nullcontext()
    with thread_local_task_state(), world:
        if handle is None:
            (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
        history.run_id = handle.run_id
        history.faults = faults
        scheduler = Scheduler(chooser, max_preemptions=max_preemptions)
        history.timeline = scheduler.timeline
        tries = _Tries([f"w{n}" for n in range(len(workload))])
        workers = {
            f"w{n}": _worker(f"w{n}", ops, handle, (claim_store, sweeper), scheduler, history, clock, faults, tries)
            for n, ops in enumerate(workload)
        }
        results = scheduler.run(workers)
    for name, result in results.items():
        if result.error is not None and not isinstance(result.error, _Crashed):
            raise RuntimeError(f"worker {name} failed outside its operations:\n{result.trace}")
    return history


class _Unscheduled:
    """Stress mode: no scheduler, threads run free."""

    def operation(self, label: str) -> None:
        pass


def stress_workload(
    workload: Sequence[Sequence[Operation]], *, dag: Any, claim_store: Any = None, timeout: float = 60.0,
    clock: ManualClock | None = None,
) -> History:
    """Run the workers as free threads (no scheduler): for real servers, where races are real.

    Bounded by the workload's operation count and by ``timeout`` seconds; a worker
    still running then is reported, not waited for.
    """
    from xcomsim.task_context import start_task_instances, thread_local_task_state

    history = History()
    errors: list[str] = []
    with thread_local_task_state():
        (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
        history.run_id = handle.run_id

        def guarded(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except _Crashed:
                    pass
                except BaseException:  # noqa: BLE001 - reported below
                    errors.append(traceback.format_exc())

            return run

        threads = [
            threading.Thread(target=guarded(_worker(f"w{n}", ops, handle, (claim_store, None), _Unscheduled(), history,
                                                    clock)))  # fmt: skip
            for n, ops in enumerate(workload)
        ]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck or errors:
        raise RuntimeError(f"stress run: {len(stuck)} worker(s) still running after {timeout}s; errors: {errors[:1]}")
    return history


def _worker(name: str, ops: Sequence[Operation], handle: Any, services: tuple[Any, Any], scheduler: Any,
            history: History, clock: ManualClock | None = None, faults: FaultPlan | None = None,
            tries: _Tries | None = None) -> Callable[[], None]:  # fmt: skip
    from xcomsim.env.clock import WORLD

    tries = _Tries([name]) if tries is None else tries

    def run() -> None:
        with injecting(faults, name):
            for op in ops:
                scheduler.operation(str(op))
                now = clock or WORLD.authority
                timing = {"start": history.tick(), "clock": now(), "now": now}
                if isinstance(op, Crash):
                    history.crashed.add(name)
                    history.add(name, op, **timing)
                    raise _Crashed()
                if isinstance(op, Takeover):  # every other worker goes on as the try that is now over
                    earlier = handle.snapshot()
                    for other in tries.workers:
                        if other != name:
                            tries.pinned.setdefault(other, earlier)
                acting = tries.pinned.get(name, handle)
                try:
                    with acting.active() as ti:  # per operation: a Retry by anyone starts a new try
                        timing["attempt"] = int(ti.try_number or 0)
                        result = _apply(op, ti, handle, services, name, clock)
                except _Crashed:
                    history.crashed.add(name)
                    history.add(name, op, error="the worker crashed inside this operation", error_type="Crash",
                                **timing)  # fmt: skip
                    raise
                except Exception as exc:
                    history.add(name, op, error=str(exc), error_type=type(exc).__name__, **timing)
                else:
                    history.add(name, op, result=result, **timing)

    return run


@dataclass
class _Tries:
    """Which workers go on as an earlier try (a zombie) after another worker took over as the next one."""

    workers: list[str]
    pinned: dict[str, Any] = field(default_factory=dict)


def _apply(op: Operation, ti: Any, handle: Any, services: tuple[Any, Any], worker: str,
           clock: ManualClock | None) -> Any:  # fmt: skip
    from airflow.sdk.execution_time.xcom import XCom

    claims, sweeper = services
    if isinstance(op, Push):
        XCom.set(op.key, op.value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
        return None
    if isinstance(op, Pull):
        return ti.xcom_pull(task_ids=ti.task_id, key=op.key)
    if isinstance(op, Delete):
        XCom.delete(key=op.key, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)
        return None
    if isinstance(op, (Retry, Takeover)):  # Airflow ends the try (a zombie's: failed by the scheduler), then the next
        handle.finish("failed")
        handle.start()
        return handle.try_number
    if isinstance(op, Claim):
        return _require(claims, op).try_claim(op.claim_id, worker, lease_seconds=op.lease_seconds) is not None
    if isinstance(op, Release):
        return _require(claims, op).release(op.claim_id, worker)
    if isinstance(op, Sweep):
        if sweeper is None:
            raise RuntimeError(f"{op} needs the backend's sweeper; pass sweeper=")
        return sweeper()
    if isinstance(op, Wait):  # the claim store's ManualClock moves; without one, real time passes
        if clock is None:
            time.sleep(op.seconds)
            return time.time()
        clock.advance(op.seconds)
        return clock()
    raise TypeError(f"unknown operation {op!r}")


def _require(claims: Any, op: Operation) -> Any:
    if claims is None:
        raise RuntimeError(f"{op} needs a claim store; pass claim_store=")
    return claims
