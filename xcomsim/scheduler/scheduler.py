"""A deterministic race scheduler: real threads, one running at a time, switches drawn by a chooser.

Each worker is a function run in its own thread. A worker runs until its next
I/O point (see ``interception``), then stops and the controller asks the
chooser which worker goes next. With a chooser backed by Hypothesis
(``hypothesis_chooser``) an interleaving is a plain draw: it replays from the
example alone, and shrinking it makes the choices small (small: the current
worker goes on), so a failure ends as a story with few preemptions that still
breaks. Every switch point takes one choice in the example, a trivial one where
nothing is offered, so spending the preemption budget early does not make an
example look simpler to Hypothesis.

Preemptions are bounded (CHESS-style): once ``max_preemptions`` switches away
from a worker that could have continued are spent, workers run to their next
natural end. Most concurrency bugs need one or two preemptions, so 2-4 workers
are explored quickly.

Workers switch only at I/O that matters to the guarantees and never while one
may hold a lock the others need (``interception.matters``/``holds_lock``). If a
worker still reaches no I/O point within ``step_timeout`` (a lock nobody told
us about, a wait on something no worker will do), the run ends with
``HarnessStuck``: a problem of the harness, not a broken guarantee, carrying
every unfinished worker's stack. The workers are then let go (a paused one runs
on unscheduled, so the lock it holds is released) and any thread still blocked
is interrupted, so the session goes on.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xcomsim.errors import XcomsimError
from xcomsim.scheduler import affinity, interception

Chooser = Callable[[Sequence[str], str | None], str]
_RELEASE_WAIT = 5.0  # seconds a let-go worker gets to finish before it is interrupted


HARNESS_PROBLEM = "xcomsim harness problem (not a verdict on the backend)"  # how a report tells it from a break


class HarnessStuck(XcomsimError):
    """A scheduled worker reached no I/O point in time: a harness problem, never a broken guarantee.

    ``stacks`` maps every unfinished worker to where it was; ``released`` says
    whether all their threads ended after being let go (if not, the ones left
    are daemon threads interrupted at their next Python instruction).
    """

    def __init__(self, message: str, stacks: Mapping[str, str], released: bool):
        self.stacks = dict(stacks)
        self.released = released
        where = "\n".join(f"--- worker {name}:\n{stack}" for name, stack in self.stacks.items())
        super().__init__(f"{message}\n{where}")


SchedulerStuck = HarnessStuck  # the earlier name


class HarnessAbandoned(BaseException):
    """Raised inside a worker thread the scheduler gave up on, to end it (nothing should catch it)."""


class _EndProperty(BaseException):
    """Carries a HarnessStuck out of a Hypothesis example: not an Exception, so no shrinking or replay."""

    def __init__(self, error: HarnessStuck):
        super().__init__(str(error))
        self.error = error


def stop_at_harness_errors(test: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``@given`` test so a ``HarnessStuck`` ends it at once, raised as itself.

    Hypothesis would otherwise shrink and replay the stuck example, paying the
    step timeout on every replay. Apply it outside ``@given``.
    """
    handle = getattr(test, "hypothesis", None)
    if handle is None:
        raise TypeError(f"{getattr(test, '__name__', test)!r} is not a @given test")
    inner = handle.inner_test

    @functools.wraps(inner)
    def example(*args: Any, **kwargs: Any) -> Any:
        try:
            return inner(*args, **kwargs)
        except HarnessStuck as exc:
            raise _EndProperty(exc) from None

    handle.inner_test = example

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return test(*args, **kwargs)
        except _EndProperty as ended:
            raise ended.error from None

    return run


@dataclass(frozen=True)
class Event:
    step: int
    worker: str
    operation: str
    io: str
    switch: bool = True  # False: recorded only (incidental I/O, or the worker may hold a lock)


@dataclass
class Timeline:
    events: list[Event] = field(default_factory=list)
    preemptions: int = 0

    def describe(self, limit: int = 60) -> str:
        lines = [f"{'step':>4}  {'worker':<10} {'operation':<34} io (. = no switch point)"]
        shown = self.events if len(self.events) <= limit else self.events[:limit]
        for e in shown:
            lines.append(f"{e.step:>4}  {e.worker:<10} {e.operation[:34]:<34} {'' if e.switch else '. '}{e.io}")
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
        self.turn = threading.Lock()  # held while the worker may not run; released to give it its turn
        self.turn.acquire()
        self.operation = "start"
        self.done = False
        self.result = WorkerResult()
        self.thread: threading.Thread | None = None


class _PooledThread:
    """A daemon thread that runs one job after another, parked on a lock in between.

    A race example needs a few threads for a few milliseconds; starting them costs about as
    much as the example's own scheduling. A thread goes back to the pool only after a worker
    that returned: one that raised, or that a scheduler let go or interrupted, ends instead.
    What a worker that returned left in thread-local state stays for the thread's next worker.
    """

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._job: Callable[[], bool] | None = None
        self.thread = threading.Thread(target=self._loop, name="xcomsim-idle", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            job, self._job = self._job, None
            if job is None or not job():
                return

    def submit(self, job: Callable[[], bool]) -> None:
        """Run ``job`` next; it returns whether this thread may be pooled again (after putting it back)."""
        self._job = job
        self._go.release()


_IDLE: list[_PooledThread] = []
_IDLE_LOCK = threading.Lock()
_IDLE_KEPT = 16


def _take_thread() -> _PooledThread:
    with _IDLE_LOCK:
        if _IDLE:
            return _IDLE.pop()
    return _PooledThread()


def _park(thread: _PooledThread) -> bool:
    """Put ``thread`` back in the pool; False if the pool is full (the thread then ends)."""
    with _IDLE_LOCK:
        if len(_IDLE) >= _IDLE_KEPT:
            return False
        _IDLE.append(thread)
        return True


def first_runnable(options: Sequence[str], current: str | None) -> str:
    """Run the current worker on, else the first: no preemption at all."""
    return current if current in options else options[0]


class HypothesisChooser:
    """Draws each switch from Hypothesis: the current worker first, so a shrunk choice means "go on".

    The draw is an index into that order, which shrinks towards the current worker; the
    timeline says who ran. A switch point where nothing is offered (no preemption left, or
    nobody else left to run) takes a trivial choice (``unchosen``), so every switch point of a
    worker takes one choice in the example, whatever the interleaving. Otherwise an example
    that spent its preemptions early took fewer choices, and Hypothesis, which shrinks towards
    fewer choices first, shrank failures to stories that spend the whole budget: a claim store
    broken by one preemption shrank to four (of four allowed) on every seed tried, now to one
    (9 of 16 seeds) or two.
    """

    def __init__(self, data: Any):
        self._draw_index = _index_drawer(data)

    def __call__(self, options: Sequence[str], current: str | None) -> str:
        ordered = ([current] if current in options else []) + [o for o in options if o != current]
        if len(ordered) == 1:
            return ordered[0]
        return ordered[self._draw_index(len(ordered) - 1)]

    def unchosen(self) -> None:
        """A switch point the scheduler offers no choice at: recorded as the only possible choice."""
        self._draw_index(0)


def hypothesis_chooser(data: Any) -> Chooser:
    """A ``HypothesisChooser`` drawing from ``data`` (``st.data()``)."""
    return HypothesisChooser(data)


def _index_drawer(data: Any) -> Callable[[int], int]:
    """An index from 0 to ``top``, drawn under Hypothesis's ``data`` as ``st.integers(0, top)`` draws it.

    The same integer choice inside a span, straight on the example's ``ConjectureData``
    (``start_span``, ``draw_integer``, ``stop_span``: what ``data.draw(st.integers(0, top))``
    records, so it replays and shrinks alike), without the strategy machinery around it or
    ``data.draw``'s "Draw n:" note, which the timeline makes redundant: about 5 us a switch
    against 10 through ``ConjectureData.draw`` and 60 through ``data.draw``. Each switch of a
    run gets a span label of its own (``_switch_label``): with one label for all, Hypothesis's
    generator copies switches onto each other (its mutator duplicates spans of one label), about
    five extra attempts per example that a small race mostly spends on interleavings it has
    already run (10-40% of a claim race's time). Where there is no such ``ConjectureData`` (a
    stand-in ``data``, or a Hypothesis without these methods), the public draw.
    """
    conjecture = getattr(data, "conjecture_data", None)
    start, draw_integer, stop = (getattr(conjecture, name, None) for name in ("start_span", "draw_integer", "stop_span"))
    if not (callable(start) and callable(draw_integer) and callable(stop)):
        return lambda top: data.draw(_index_strategy(top), label="next worker")
    positions = itertools.count()

    def draw_index(top: int) -> int:
        start(_switch_label(next(positions)))
        try:
            return draw_integer(0, top)
        finally:
            stop()

    return draw_index


@functools.cache
def _switch_label(position: int) -> int:
    from hypothesis.internal.conjecture.utils import calc_label_from_name

    return calc_label_from_name(f"xcomsim race switch {position}")


@functools.cache
def _index_strategy(top: int) -> Any:
    from hypothesis import strategies as st

    return st.integers(0, top)


class Scheduler:
    """Runs workers one at a time; the chooser picks who runs at each switch point.

    Handing the turn over is a pair of plain locks, between threads pinned to one CPU (a few
    microseconds each way; across CPUs about ten times that); a switch point where
    there is nothing to choose (the worker is the only one left, or no preemption is left) is only
    recorded, and the worker runs on without a handover.
    """

    def __init__(self, chooser: Chooser = first_runnable, max_preemptions: int = 3, step_timeout: float = 30.0):
        self.chooser = chooser
        self._unchosen = getattr(chooser, "unchosen", None)  # a chooser that records every switch point
        self.max_preemptions = max_preemptions
        self.step_timeout = step_timeout
        self.timeline = Timeline()
        self._back = threading.Lock()  # released by the running worker when it pauses or ends
        self._back.acquire()
        self._workers: dict[str, _Worker] = {}
        self._running: _Worker | None = None
        self._abandoned = False  # after a stuck step or an error: workers run on unscheduled

    # ------------------------------------------------------------ worker side
    def operation(self, label: str) -> None:
        """Name what the calling worker does next (shown in the timeline)."""
        worker = self._running
        if worker is not None and threading.current_thread() is worker.thread:
            worker.operation = label

    def _pause(self, io: str, preemptible: bool = True) -> None:
        if self._abandoned:
            return
        worker = self._running
        assert worker is not None and threading.current_thread() is worker.thread
        self.timeline.events.append(Event(len(self.timeline.events), worker.name, worker.operation, io, preemptible))
        if not preemptible:
            return
        if not self._choice_left(worker):
            if self._unchosen is not None:
                self._unchosen()
            return
        self._running = None
        self._back.release()
        worker.turn.acquire()

    def _choice_left(self, worker: _Worker) -> bool:
        """Whether the controller could pick anyone but ``worker`` here (else it runs on, as the controller would)."""
        if self.timeline.preemptions >= self.max_preemptions:
            return False
        return any(not w.done for w in self._workers.values() if w is not worker)

    def _body(self, worker: _Worker, pooled: _PooledThread) -> bool:
        pooled.thread.name = f"xcomsim-{worker.name}"
        worker.turn.acquire()
        if self._abandoned:
            worker.done = True
            return False
        interception.set_hook(self._pause)
        try:
            worker.result.value = worker.fn()
        except BaseException as exc:  # reported, not raised in the thread
            worker.result.error = exc
            worker.result.trace = traceback.format_exc()
        finally:
            interception.set_hook(None)
            worker.done = True
            abandoned = self._abandoned
            if not abandoned:
                self._running = None
                pooled.thread.name = "xcomsim-idle"
                # A worker that raised (a crash drawn for it, a backend's error) may have left state in
                # its thread (an open session, a half-built client): its thread ends, the next gets a new one.
                pooled_again = worker.result.error is None and _park(pooled)
                self._back.release()
        return not abandoned and pooled_again

    # -------------------------------------------------------- controller side
    def run(self, workers: Mapping[str, Callable[[], Any]]) -> dict[str, WorkerResult]:
        """Run the workers to completion under the chooser; return each one's result."""
        interception.install()
        # On one CPU (see ``affinity``): pooled threads are started by the pinned controller, so
        # they run there, and stay there between races.
        with affinity.one_cpu(keep=lambda: [w.thread for w in self._workers.values() if w.thread is not None]):
            return self._run(workers)

    def _run(self, workers: Mapping[str, Callable[[], Any]]) -> dict[str, WorkerResult]:
        self._workers = {name: _Worker(name, fn) for name, fn in workers.items()}
        for worker in self._workers.values():
            pooled = _take_thread()
            worker.thread = pooled.thread
            pooled.submit(functools.partial(self._body, worker, pooled))
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
            if not self._abandoned and any(not w.done for w in self._workers.values()):
                self._let_go()  # an error (e.g. the chooser's) left workers parked
        return {name: w.result for name, w in self._workers.items()}

    def _let_go(self) -> bool:
        """Never leave a thread parked: unfinished workers run on unscheduled; any still blocked is interrupted."""
        self._abandoned = True
        for worker in self._workers.values():
            try:
                worker.turn.release()
            except RuntimeError:  # not held: the worker has its turn, or has ended
                pass
        threads = [w.thread for w in self._workers.values() if w.thread is not None and not w.done]
        for thread in threads:
            thread.join(timeout=_RELEASE_WAIT)
        for thread in threads:
            if thread.is_alive() and thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                           ctypes.py_object(HarnessAbandoned))  # fmt: skip
        for thread in threads:
            thread.join(timeout=1.0)
        return not any(thread.is_alive() for thread in threads)

    def _stacks(self) -> dict[str, str]:
        frames = sys._current_frames()
        stacks = {}
        for worker in self._workers.values():
            frame = frames.get(worker.thread.ident) if worker.thread is not None else None
            if not worker.done and frame is not None:
                state = "running" if worker is self._running else "paused"
                stacks[f"{worker.name} ({state}, during {worker.operation!r})"] = "".join(
                    traceback.format_stack(frame))
        return stacks

    def _step(self, worker: _Worker) -> None:
        """Give ``worker`` the turn until it pauses or ends."""
        self._running = worker
        worker.turn.release()
        if self._back.acquire(timeout=self.step_timeout):
            return
        stacks = self._stacks()
        released = self._let_go()
        raise HarnessStuck(
            f"{HARNESS_PROBLEM}: worker {worker.name} ran "
            f"{self.step_timeout}s without reaching an I/O point (during {worker.operation!r}): a lock held by "
            f"a paused worker, or a wait the scheduler cannot see. "
            + ("Every worker was let go and ended." if released else "Some worker threads could not be ended.")
            + f"\n{self.timeline.describe()}\nunfinished workers' stacks:",
            stacks,
            released,
        )
