"""The race scheduler itself: one worker at a time, replayable from its choices, bounded preemptions."""

from __future__ import annotations

import threading

import pytest

from xcomsim.scheduler import Scheduler, SchedulerStuck, first_runnable
from xcomsim.scheduler import interception


def _io_worker(name: str, points: int, log: list[str]):
    def run() -> str:
        for i in range(points):
            interception.io_point(f"{name} io {i}")
            log.append(f"{name}{i}")
        return name

    return run


class Scripted:
    """A chooser that replays a fixed list of choices (what Hypothesis does from its draws)."""

    def __init__(self, picks: list[str]):
        self.picks = list(picks)
        self.asked = 0

    def __call__(self, options, current):
        self.asked += 1
        wanted = self.picks.pop(0) if self.picks else current
        return wanted if wanted in options else options[0]


def test_only_one_worker_runs_at_a_time_and_choices_replay():
    runs = []
    for _ in range(2):
        log: list[str] = []
        scheduler = Scheduler(Scripted(["a", "b", "a", "b", "a", "b"]), max_preemptions=10)
        results = scheduler.run({"a": _io_worker("a", 3, log), "b": _io_worker("b", 3, log)})
        assert {r.value for r in results.values()} == {"a", "b"}
        runs.append((log, [(e.worker, e.io) for e in scheduler.timeline.events]))
    assert runs[0] == runs[1]
    # six picks: both start, then alternate; once the script ends the current worker runs on
    assert runs[0][0] == ["a0", "b0", "a1", "b1", "b2", "a2"]


def test_preemptions_are_bounded():
    log: list[str] = []
    scheduler = Scheduler(Scripted(["a", "b"] * 10), max_preemptions=1)
    scheduler.run({"a": _io_worker("a", 4, log), "b": _io_worker("b", 4, log)})
    assert scheduler.timeline.preemptions == 1
    switches = sum(1 for x, y in zip(log, log[1:]) if x[0] != y[0])
    assert switches == 1


def test_without_preemption_workers_run_whole():
    log: list[str] = []
    Scheduler(first_runnable).run({"a": _io_worker("a", 3, log), "b": _io_worker("b", 3, log)})
    assert log == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_worker_errors_are_kept_not_raised():
    def boom():
        interception.io_point("before")
        raise ValueError("inside the worker")

    results = Scheduler().run({"bad": boom})
    assert isinstance(results["bad"].error, ValueError)
    assert "inside the worker" in results["bad"].trace


def test_a_worker_that_never_reaches_io_is_reported_stuck():
    release = threading.Event()

    def waits():
        release.wait(5)

    scheduler = Scheduler(step_timeout=0.3)
    with pytest.raises(SchedulerStuck, match="without reaching an I/O point"):
        scheduler.run({"w": waits})
    release.set()
