"""The simulated world's wall clock: one virtual "now" for the test's process, skewed per worker.

Waits that only pass time (a ``retry_delay``, a sensor's reschedule, a trigger's
moment, an upload slower than a lease) move this clock instead of sleeping, and
every reader of wall time in the process sees it move: Airflow's ``utcnow``, a
backend's ``time.time()`` or ``datetime.now()``, a claim store's clock.
``time-machine`` does the patching (``time.time``, ``datetime.now`` and the rest,
at C level); this module only decides where its traveller is.

A deployment's hosts disagree about the time. ``skewed(seconds)`` makes the
calling thread's wall clock run that far ahead (or behind, if negative) of
everyone else's, as a worker on a host with a wrong clock would: a race's
worker threads can each have their own. time-machine asks its traveller for
the time on every read; the one installed here adds the reading thread's skew.
``authority()`` is the clock without any skew: what a server that judges for
every worker reads (a metadata DB's, a store's), and what histories are stamped
with. Monotonic clocks are not moved: a duration on one host stays a duration.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

_local = threading.local()
_lock = threading.Lock()


class _SkewingTraveller:
    """time-machine's traveller as every thread reads it: its time plus the reading thread's skew."""

    def __init__(self, base: Any):
        self.base = base

    def time_ns(self) -> int:
        return self.base.time_ns() + getattr(_local, "skew_ns", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


class WorldClock:
    """The process's virtual wall clock while ``running()``; real time (plus nothing) otherwise."""

    def __init__(self) -> None:
        self._depth = 0
        self._travel: Any = None
        self._traveller: Any = None

    @contextlib.contextmanager
    def running(self) -> Iterator[WorldClock]:
        """Virtual time from now on (re-entrant): it ticks with real time, and ``advance`` moves it on."""
        import time_machine

        with _lock:
            if self._depth == 0:
                self._travel = time_machine.travel(time.time(), tick=True)
                self._traveller = self._travel.start()
                time_machine.traveller_stack[-1] = _SkewingTraveller(self._traveller)
            self._depth += 1
        try:
            yield self
        finally:
            with _lock:
                self._depth -= 1
                if self._depth == 0:
                    self._travel.stop()
                    self._travel = self._traveller = None

    @property
    def virtual(self) -> bool:
        return self._traveller is not None

    def advance(self, seconds: float) -> None:
        """Time passes for everyone at once (a wait skipped, an operation that took this long)."""
        if seconds <= 0:
            return
        if self._traveller is None:
            raise RuntimeError("the world clock moves only while running(): wrap the run in WorldClock.running()")
        self._traveller.shift(seconds)

    def authority(self) -> float:
        """Now, as a clock every worker trusts reads it: the world's time without the caller's skew."""
        return (self._traveller.time_ns() / 1e9) if self._traveller is not None else time.time()

    @contextlib.contextmanager
    def skewed(self, seconds: float) -> Iterator[None]:
        """This thread's wall clock runs ``seconds`` off everyone else's while the block runs."""
        previous = getattr(_local, "skew_ns", 0)
        _local.skew_ns = int(seconds * 1e9)
        try:
            yield
        finally:
            _local.skew_ns = previous

    def set_skew(self, seconds: float) -> None:
        """From now on this thread's wall clock runs ``seconds`` off (a fault: the worker's host clock)."""
        _local.skew_ns = int(seconds * 1e9)

    def skew(self) -> float:
        return getattr(_local, "skew_ns", 0) / 1e9


WORLD = WorldClock()


@contextlib.contextmanager
def unskewed() -> Iterator[None]:
    """This thread reads the world's own time while the block runs (it serves as another host: a server)."""
    previous = getattr(_local, "skew_ns", 0)
    _local.skew_ns = 0
    try:
        yield
    finally:
        _local.skew_ns = previous
