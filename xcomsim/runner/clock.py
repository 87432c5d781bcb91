"""Time as a DAG run sees it: a deadline that holds, and a clock that can skip waits.

Two things make a test run wait on the wall clock: a bound that must end a stuck
run (the run timeout), and waits that only pass time (a sensor rescheduled for
later, a trigger sleeping until a moment, a poke-mode sensor's ``sleep``). The
``Deadline`` interrupts the run's own thread with ``SIGALRM`` (task code and
triggers run there; Airflow's ``execution_timeout`` works the same way) and is
checked between steps. The ``VirtualClock`` moves "now" forward instead of
sleeping: it runs the simulated world's clock (``xcomsim.env.clock``, time-machine
underneath), so Airflow's ``utcnow``, a backend's ``time.time()`` and everything
else in the process that reads wall time see real time plus the skipped seconds,
and the sensor module's ``time`` skips its sleeps; a sensor's timeout, a
trigger's moment and a retry's ``retry_delay`` still arrive in the order they
would, only without the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import selectors
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from xcomsim.env.clock import WORLD
from xcomsim.errors import Interrupt

# Modules that wait with ``time.sleep`` and measure with ``time.monotonic`` (poke-mode sensors).
_TIME_MODULES = ("airflow.sdk.bases.sensor",)


class RunTimeout(Interrupt):
    """The run timeout expired."""


class Deadline:
    """The run timeout: ``check()`` between steps, ``armed()`` around code that may block."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def restart(self) -> None:
        self.at = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def check(self) -> None:
        if self.expired():
            raise RunTimeout(f"run timeout of {self.seconds:g}s expired")

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """Interrupt the block with RunTimeout when the deadline passes, then again every second.

        Only the main thread can receive signals; elsewhere the block runs unguarded
        (triggers are still bounded by the event loop's own check).
        """
        self.check()
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
            yield
            return

        def expire(signum: int, frame: Any) -> None:
            raise RunTimeout(f"run timeout of {self.seconds:g}s expired")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, max(self.remaining(), 0.001), 1.0)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class VirtualClock:
    """Real time plus the seconds skipped so far; ``travel=False`` makes every wait real."""

    def __init__(self, deadline: Deadline, travel: bool = True):
        self.deadline = deadline
        self.travel = travel
        self.skipped = 0.0

    def now(self) -> dt.datetime:
        """The world's time (the simulated clock while installed with travel on)."""
        return dt.datetime.fromtimestamp(WORLD.authority(), tz=dt.timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def skip(self, seconds: float) -> None:
        if seconds > 0:
            self.skipped += seconds
            if WORLD.virtual:
                WORLD.advance(seconds)

    def advance_to(self, moment: dt.datetime) -> None:
        """Skip ahead to ``moment`` (a reschedule date) if it is still in the future."""
        self.skip((moment - self.now()).total_seconds())

    def sleep(self, seconds: float) -> None:
        self.deadline.check()
        if self.travel:
            self.skip(seconds)
            return
        time.sleep(max(0.0, min(seconds, self.deadline.remaining())))
        self.deadline.check()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Run the world's clock for the process, and make the sensors' ``time`` skip, while the run lasts."""
        with contextlib.ExitStack() as stack:
            if self.travel:
                stack.enter_context(WORLD.running())
                for name in _TIME_MODULES:
                    module = sys.modules.get(name)
                    if module is not None and getattr(module, "time", None) is time:
                        stack.enter_context(_patched(module, "time", _TimeView(self)))
            yield



@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


class _TimeView:
    """The ``time`` module as a poke-mode sensor sees it: ``sleep`` skips, ``monotonic`` follows."""

    def __init__(self, clock: VirtualClock):
        self._clock = clock

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _SkippingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector for asyncio that skips idle waits on the virtual clock.

    asyncio asks the selector to wait until its next timer is due. If no file
    descriptor but the loop's own wake-up pipe is registered (no real I/O is in
    flight), a short real wait lets threads (``sync_to_async`` DB calls) finish,
    and the rest of the wait is skipped. The loop's ``time()`` must follow, so
    the loop is given ``_VirtualTime``. The run deadline is checked on every wait.
    """

    GRACE = 0.02

    def __init__(self, clock: VirtualClock):
        super().__init__()
        self.clock = clock
        self.enforce = True  # off while the loop is being torn down

    def select(self, timeout: float | None = None) -> list[Any]:
        if not self.enforce:
            return super().select(0 if timeout is None else min(timeout, self.GRACE))
        self.clock.deadline.check()
        real_io = len(self.get_map()) > 1
        if not self.clock.travel or real_io or timeout is None or timeout <= self.GRACE:
            bound = self.clock.deadline.remaining() if timeout is None else min(timeout, self.clock.deadline.remaining())
            return super().select(max(bound, 0))
        events = super().select(self.GRACE)
        if not events:
            self.clock.skip(timeout - self.GRACE)
        return events


def run_coroutine(clock: VirtualClock, coro: Any) -> Any:
    """Run ``coro`` on a loop whose ``time()`` is the virtual clock's; the loop is always closed."""
    selector = _SkippingSelector(clock)
    loop = asyncio.SelectorEventLoop(selector)
    loop.time = clock.monotonic  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(coro)
    finally:
        selector.enforce = False
        with contextlib.suppress(Exception):
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1))
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()  # does not wait for executor threads: a stuck one must not hold the run
