"""A deterministic race scheduler: real threads, one running at a time, switches drawn by a chooser.

Each worker is a function run in its own thread. A worker runs until its next
I/O point (see ``interception``), then stops and the controller asks the
chooser which worker goes next. With a chooser backed by Hypothesis
(``hypothesis_chooser``) an interleaving is a plain draw: it replays from the
example alone, and shrinking it removes needless switches, so a failure ends as
the shortest story that still breaks.

Preemptions are bounded (CHESS-style): once ``max_preemptions`` switches away
from a worker that could have continued are spent, workers run to their next
natural end. Most concurrency bugs need one or two preemptions, so 2-4 workers
are explored quickly.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xcomsim.scheduler import interception

Chooser = Callable[[Sequence[str], str | None], str]


class SchedulerStuck(RuntimeError):
    """No worker reached an I/O point in time: a deadlock, or I/O the scheduler cannot see."""


@dataclass(frozen=True)
class Event:
    step: int
    worker: str
    operation: str
    io: str


@dataclass
class Timeline:
    events: list[Event] = field(default_factory=list)
    preemptions: int = 0

    def describe(self, limit: int = 60) -> str:
        lines = [f"{'step':>4}  {'worker':<10} {'operation':<34} io"]
        shown = self.events if len(self.events) <= limit else self.events[:limit]
        for e in shown:
            lines.append(f"{e.step:>4}  {e.worker:<10} {e.operation[:34]:<34} {e.io}")
        if len(self.events) > limit:
            lines.append(f"      ... {len(self.events) - limit} more")
        return "\n".join(lines)


@dataclass
class WorkerResult:
    value: Any = None
    error: BaseException | None = None
    trace: str = ""


class _Worker:
    def __init__(self, name: str, fn: Callable[[], Any]):
        self.name = name
        self.fn = fn
        self.turn = threading.Event()
        self.operation = "start"
        self.done = False
        self.result = WorkerResult()
        self.thread: threading.Thread | None = None


def first_runnable(options: Sequence[str], current: str | None) -> str:
    """Run the current worker on, else the first: no preemption at all."""
    return current if current in options else options[0]


def hypothesis_chooser(data: Any) -> Chooser:
    """Draw each switch from Hypothesis: the current worker first, so shrinking means fewer switches."""
    from hypothesis import strategies as st

    def choose(options: Sequence[str], current: str | None) -> str:
        ordered = ([current] if current in options else []) + [o for o in options if o != current]
        return data.draw(st.sampled_from(ordered), label="next worker")

    return choose


class Scheduler:
    def __init__(self, chooser: Chooser = first_runnable, max_preemptions: int = 3, step_timeout: float = 30.0):
        self.chooser = chooser
        self.max_preemptions = max_preemptions
        self.step_timeout = step_timeout
        self.timeline = Timeline()
        self._paused = threading.Condition()
        self._workers: dict[str, _Worker] = {}
        self._running: _Worker | None = None

    # ------------------------------------------------------------ worker side
    def operation(self, label: str) -> None:
        """Name what the calling worker does next (shown in the timeline)."""
        worker = self._running
        if worker is not None and threading.current_thread() is worker.thread:
            worker.operation = label

    def _pause(self, io: str, preemptible: bool = True) -> None:
        worker = self._running
        assert worker is not None and threading.current_thread() is worker.thread
        self.timeline.events.append(Event(len(self.timeline.events), worker.name, worker.operation, io))
        if not preemptible:
            return
        worker.turn.clear()
        with self._paused:
            self._running = None
            self._paused.notify_all()
        worker.turn.wait()

    def _body(self, worker: _Worker) -> None:
        worker.turn.wait()
        interception.set_hook(self._pause)
        try:
            worker.result.value = worker.fn()
        except BaseException as exc:  # reported, not raised in the thread
            worker.result.error = exc
            worker.result.trace = traceback.format_exc()
        finally:
            interception.set_hook(None)
            worker.done = True
            with self._paused:
                self._running = None
                self._paused.notify_all()

    # -------------------------------------------------------- controller side
    def run(self, workers: Mapping[str, Callable[[], Any]]) -> dict[str, WorkerResult]:
        """Run the workers to completion under the chooser; return each one's result."""
        interception.install()
        self._workers = {name: _Worker(name, fn) for name, fn in workers.items()}
        for worker in self._workers.values():
            worker.thread = threading.Thread(target=self._body, args=(worker,), name=f"xcomsim-{worker.name}")
            worker.thread.start()
        current: str | None = None
        try:
            while True:
                alive = [name for name, w in self._workers.items() if not w.done]
                if not alive:
                    break
                if current in alive and self.timeline.preemptions >= self.max_preemptions:
                    chosen = current
                else:
                    chosen = self.chooser(alive, current)
                    if current in alive and chosen != current:
                        self.timeline.preemptions += 1
                current = chosen
                self._step(self._workers[chosen])
        finally:
            for worker in self._workers.values():  # never leave a thread parked
                worker.turn.set()
            for worker in self._workers.values():
                if worker.thread is not None:
                    worker.thread.join(timeout=self.step_timeout)
        return {name: w.result for name, w in self._workers.items()}

    def _step(self, worker: _Worker) -> None:
        with self._paused:
            self._running = worker
            worker.turn.set()
            if not self._paused.wait_for(lambda: self._running is None, timeout=self.step_timeout):
                raise SchedulerStuck(
                    f"worker {worker.name} ran {self.step_timeout}s without reaching an I/O point "
                    f"(during {worker.operation!r}); a deadlock, or a wait the scheduler cannot see.\n"
                    + self.timeline.describe()
                )
