"""The race scheduler itself: one worker at a time, replayable from its choices, bounded preemptions."""

from __future__ import annotations

import functools
import os
import threading

import pytest

from xcomsim.scheduler import HarnessStuck, Scheduler, SchedulerStuck, first_runnable
from xcomsim.scheduler import affinity, interception


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


# ---------------------------------------------------------------- switch points and locks
def test_only_io_that_matters_is_a_switch_point():
    assert interception.matters("api SetXCom") and interception.matters("api GetXComSequenceSlice")
    assert not interception.matters("api MaskSecret") and not interception.matters("api GetConnection")
    assert interception.matters("s3 PutObject xcom/k") and interception.matters("s3 ListObjectsV2 xcom/")
    assert not interception.matters("s3 HeadBucket ") and not interception.matters("s3 CreateBucket ")
    assert interception.matters("redis SET 'k'") and not interception.matters("redis PING")
    assert interception.matters("sql borrow connection")
    assert interception.matters("s3 put_file bucket/k") and not interception.matters("s3 set_session ")


class _Client:
    """A lazily built client, the way provider hooks cache theirs (``functools.cached_property``)."""

    @functools.cached_property
    def config(self) -> str:
        interception.io_point("api SetXCom")  # I/O while the property is computed (3.11: under a class-wide lock)
        return "built"


def test_no_switch_inside_a_locking_cached_property_and_the_race_ends():
    """Each worker builds its own client; a chooser that always switches cannot deadlock them on any Python."""

    def worker() -> str:
        value = _Client().config
        interception.io_point("api GetXCom")
        return value

    always_switch = Scripted(["a", "b"] * 10)
    scheduler = Scheduler(always_switch, max_preemptions=10, step_timeout=5)
    results = scheduler.run({"a": worker, "b": worker})
    assert [r.value for r in results.values()] == ["built", "built"]
    inside = [e for e in scheduler.timeline.events if e.io == "api SetXCom"]
    assert len(inside) == 2
    if hasattr(functools.cached_property(lambda self: None), "lock"):  # Python 3.11: recorded, never switched at
        assert not any(e.switch for e in inside) and "no switch point" in scheduler.timeline.describe()


def test_no_switch_while_a_registered_lock_holder_runs():
    lock = threading.Lock()

    def locked_section() -> None:
        with lock:
            interception.io_point("api SetXCom")

    interception.register_lock_holder(locked_section)

    def worker() -> None:
        locked_section()
        interception.io_point("api GetXCom")

    scheduler = Scheduler(Scripted(["a", "b"] * 10), max_preemptions=10, step_timeout=5)
    scheduler.run({"a": worker, "b": worker})
    assert [e.switch for e in scheduler.timeline.events if e.io == "api SetXCom"] == [False, False]



def test_a_lock_holder_registered_after_its_code_was_walked_still_counts():
    """The verdict per code object is memoised; registering a holder must not be hidden by an earlier verdict."""

    def section() -> bool:
        return interception.holds_lock()

    assert section() is False  # walked once: its code is remembered as no holder
    interception.register_lock_holder(section)
    assert section() is True
def _deadlocking_workers():
    """a holds a lock the scheduler was not told about and pauses at I/O inside it; b needs the lock."""
    lock = threading.Lock()

    def a() -> str:
        with lock:
            interception.io_point("api SetXCom")
        return "a done"

    def b() -> str:
        with lock:
            return "b done"

    return {"a": a, "b": b}


def test_a_stuck_worker_is_a_harness_problem_with_every_stack_and_is_released():
    from xcomsim.errors import XcomsimError

    scheduler = Scheduler(Scripted(["a", "b"]), max_preemptions=5, step_timeout=0.5)
    with pytest.raises(HarnessStuck) as stuck:
        scheduler.run(_deadlocking_workers())
    error = stuck.value
    assert isinstance(error, XcomsimError) and not isinstance(error, AssertionError)  # never an InvariantViolation
    assert "harness problem (not a verdict on the backend)" in str(error)
    assert set(error.stacks) == {"a (paused, during 'start')", "b (running, during 'start')"}
    assert "in a\n" in error.stacks["a (paused, during 'start')"] and "with lock" in str(error)
    assert error.released  # a was let go, released the lock, and b went on
    assert not [t for t in threading.enumerate() if t.name in ("xcomsim-a", "xcomsim-b")]  # both threads ended


def test_a_stuck_property_ends_at_its_first_stuck_example():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from xcomsim.scheduler import hypothesis_chooser, stop_at_harness_errors

    stuck = []

    @stop_at_harness_errors
    @settings(max_examples=50, database=None, deadline=None)
    @given(data=st.data())
    def race(data):
        try:
            Scheduler(hypothesis_chooser(data), max_preemptions=5, step_timeout=0.3).run(_deadlocking_workers())
        except HarnessStuck:
            stuck.append(1)
            raise

    with pytest.raises(HarnessStuck):
        race()
    assert len(stuck) == 1  # the first example that switched to b inside a's lock ended it: no shrinking, no replay


def test_the_session_goes_on_after_a_stuck_example(pytester):
    pytester.makepyfile(
        test_stuck="""
        import threading
        from xcomsim.scheduler import Scheduler, interception

        def test_stuck():
            lock = threading.Lock()
            def a():
                with lock:
                    interception.io_point("api SetXCom")
            def b():
                with lock:
                    pass
            picks = iter(["a", "b"])
            Scheduler(lambda options, current: next(picks, options[0]), step_timeout=0.5).run({"a": a, "b": b})

        def test_after():
            log = []
            Scheduler().run({"w": lambda: log.append(interception.io_point("api GetXCom"))})
            assert log == [None]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-q")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*HarnessStuck: xcomsim harness problem (not a verdict on the backend)*"])


def test_worker_threads_are_reused_across_runs():
    marks = threading.local()
    seen = []

    def worker() -> None:
        seen.append(getattr(marks, "run", None))
        marks.run = "first"
        interception.io_point("api SetXCom")

    Scheduler(first_runnable).run({"a": worker, "b": worker})
    assert seen == [None, None]
    Scheduler(first_runnable).run({"a": worker, "b": worker})
    assert seen[2:] == ["first", "first"]  # the same threads, parked after the first run


def test_a_switch_point_with_nothing_to_choose_is_recorded_without_asking_the_chooser():
    chooser = Scripted([])
    log: list[str] = []
    scheduler = Scheduler(chooser, max_preemptions=10)
    scheduler.run({"a": _io_worker("a", 5, log)})
    assert chooser.asked == 1  # who starts; the only worker then runs through its five points
    assert [e.io for e in scheduler.timeline.events] == [f"a io {i}" for i in range(5)]

    chooser = Scripted(["b", "a"])  # one preemption, spent at once: then nobody is asked again
    scheduler = Scheduler(chooser, max_preemptions=1)
    scheduler.run({"a": _io_worker("a", 4, log), "b": _io_worker("b", 4, log)})
    assert scheduler.timeline.preemptions == 1
    assert chooser.asked == 3  # who starts, the preemption, who goes on when b is done
    assert len(scheduler.timeline.events) == 8


def _interception_listeners() -> list:
    from sqlalchemy.engine import Engine

    return [fn for fn in Engine.dispatch.before_cursor_execute._clslevel.get(Engine, ())
            if any(getattr(c.cell_contents, "__module__", None) == interception.__name__
                   for c in (fn.__closure__ or ()))]  # fmt: skip


def test_statements_are_recorded_without_an_engine_event_listener(tmp_path):
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")  # a QueuePool: Pool.connect is the borrow

    def worker() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 41 + 1")).scalar_one()

    scheduler = Scheduler(first_runnable)
    scheduler.run({"a": worker})
    assert [e.io for e in scheduler.timeline.events] == ["sql borrow connection", "sql SELECT 41 + 1"]
    assert [e.switch for e in scheduler.timeline.events] == [True, False]
    assert _interception_listeners() == []  # no SQLAlchemy event: it would slow every statement of the session


def test_a_worker_that_raised_leaves_nothing_in_the_next_workers_thread():
    marks = threading.local()
    seen = []

    def crashes() -> None:
        marks.left = "half-done"
        interception.io_point("api SetXCom")
        raise RuntimeError("crashed mid-operation")

    def looks() -> None:
        seen.append(getattr(marks, "left", None))

    results = Scheduler(first_runnable).run({"a": crashes})
    assert isinstance(results["a"].error, RuntimeError)
    for _ in range(3):  # whichever pooled thread each run gets, none is the crashed one's
        Scheduler(first_runnable).run({"a": looks, "b": looks})
    assert seen == [None] * 6


pinnable = pytest.mark.skipif(affinity.race_cpu() is None, reason="this platform cannot pin threads to a CPU")


@pinnable
def test_a_runs_threads_share_one_cpu_and_the_controller_is_put_back():
    before = os.sched_getaffinity(0)
    seen = {}

    def worker(name: str):
        def run() -> None:
            seen[name, "start"] = os.sched_getaffinity(0)
            interception.io_point("api SetXCom")
            seen[name, "end"] = os.sched_getaffinity(0)

        return run

    def controller_sees(options, current):
        seen["controller"] = os.sched_getaffinity(0)
        return first_runnable(options, current)

    Scheduler(controller_sees).run({"a": worker("a"), "b": worker("b")})
    cpu = {affinity.race_cpu()}
    assert set(map(frozenset, seen.values())) == {frozenset(cpu)}  # both workers, start and end, and the controller
    assert os.sched_getaffinity(0) == before  # the test's own thread runs where it did


@pinnable
def test_a_thread_a_worker_started_is_put_back_after_the_race():
    before = os.sched_getaffinity(0)
    started: list[threading.Thread] = []
    go_on = threading.Event()

    def worker() -> None:  # a client that starts its own I/O loop thread on first use
        thread = threading.Thread(target=go_on.wait, args=(10,), daemon=True)
        thread.start()
        started.append(thread)
        interception.io_point("api SetXCom")

    Scheduler(first_runnable).run({"a": worker})
    try:
        assert os.sched_getaffinity(started[0].native_id) == before  # not left on the race's one CPU
    finally:
        go_on.set()


@pinnable
def test_an_embedded_server_joins_the_race_cpu_with_every_thread():
    from xcomsim.env.child_server import ChildServer

    server = ChildServer("fakeredis")
    try:
        server.wait_ready()
        tids = [int(t) for t in os.listdir(f"/proc/{server._process.pid}/task")]
        Scheduler(first_runnable).run({"a": lambda: None})
        assert {frozenset(os.sched_getaffinity(tid)) for tid in tids} == {frozenset({affinity.race_cpu()})}
    finally:
        server.close()
    assert server._process.pid not in affinity.companions()  # a closed server is not pinned again


def test_hypothesis_chooser_draws_through_hypothesis_and_replays():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from xcomsim.scheduler import hypothesis_chooser

    timelines: dict[int, list] = {}

    @settings(max_examples=30, database=None, derandomize=True, deadline=None)
    @given(st.integers(0, 5), st.data())
    def race(seed, data):
        data.draw = None  # the note-writing public draw is not what the chooser pays for
        log: list[str] = []
        scheduler = Scheduler(hypothesis_chooser(data), max_preemptions=4)
        scheduler.run({"a": _io_worker("a", 2, log), "b": _io_worker("b", 2, log)})
        timelines.setdefault(seed, []).append(log)

    race()
    race()  # derandomized: the same examples, hence the same draws and the same interleavings
    orders = {tuple(log) for logs in timelines.values() for log in logs}
    assert len(orders) > 1  # Hypothesis's choices did pick different interleavings


def test_each_switch_of_a_run_has_a_span_label_of_its_own_the_same_in_every_example():
    """One label per switch position: Hypothesis's mutator has no spans of one label to copy onto each
    other (its duplicate-and-retry attempts), and a position's label is the same in every example."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from xcomsim.scheduler import hypothesis_chooser

    runs: list[list[int]] = []

    @settings(max_examples=20, database=None, derandomize=True, deadline=None)
    @given(st.data())
    def race(data):
        labels: list[int] = []
        start = data.conjecture_data.start_span
        data.conjecture_data.start_span = lambda label: labels.append(label) or start(label)
        log: list[str] = []
        Scheduler(hypothesis_chooser(data), max_preemptions=4).run({"a": _io_worker("a", 3, log),
                                                                    "b": _io_worker("b", 3, log)})  # fmt: skip
        runs.append(labels)

    race()
    assert any(len(labels) > 2 for labels in runs)
    assert all(None not in labels and len(set(labels)) == len(labels) for labels in runs)
    longest = max(runs, key=len)
    assert all(labels == longest[: len(labels)] for labels in runs)  # position i: one label in every example


def test_hypothesis_chooser_falls_back_to_the_public_draw():
    from xcomsim.scheduler import hypothesis_chooser

    class StandIn:  # a data object without Hypothesis's integer choice beneath it
        def __init__(self) -> None:
            self.drawn = 0

        def draw(self, strategy, label=None):
            self.drawn += 1
            return 1  # always the second option

    data = StandIn()
    log: list[str] = []
    Scheduler(hypothesis_chooser(data), max_preemptions=4).run({"a": _io_worker("a", 2, log),
                                                                "b": _io_worker("b", 2, log)})  # fmt: skip
    assert data.drawn > 0
    assert log == ["b0", "a0", "b1", "a1"]  # every switch took the other worker


def test_a_failure_that_needs_one_preemption_shrinks_to_few_not_to_the_whole_budget():
    """Every switch point takes one choice (a trivial one where nothing is offered), so an example that
    spends its preemptions early does not look simpler to Hypothesis than one that spends few."""
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st

    from xcomsim.scheduler import hypothesis_chooser

    shrunk: list[int] = []
    for which in range(4):
        last: dict[str, int] = {}

        @settings(max_examples=200, database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @seed(which)
        @given(st.data())
        def lost_update(data):
            counter = {"n": 0}

            def add_twice() -> None:  # read, I/O, write: a second worker in between loses an update
                for _ in range(2):
                    seen = counter["n"]
                    interception.io_point("api GetXCom counter")
                    counter["n"] = seen + 1
                    interception.io_point("api SetXCom counter")

            scheduler = Scheduler(hypothesis_chooser(data), max_preemptions=4)
            scheduler.run({name: add_twice for name in ("a", "b", "c")})
            last["preemptions"] = scheduler.timeline.preemptions
            assert counter["n"] == 6

        with pytest.raises(AssertionError):
            lost_update()
        shrunk.append(last["preemptions"])  # Hypothesis ends by replaying the shrunk example
    assert max(shrunk) <= 2 and min(shrunk) == 1, shrunk
