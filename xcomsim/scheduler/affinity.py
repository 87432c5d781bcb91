"""One CPU for a race: its threads, and the embedded servers they talk to.

Only one scheduled thread runs at a time, so a second CPU buys a race nothing, while handing
the turn to a thread on another CPU costs two cross-CPU wake-ups (the lock, then the GIL):
about 30 us each way on a 2-core VM, against about 2.5 us between threads on one CPU. A
request to an embedded server (fakeredis, moto: child processes) is the same story: a Redis
claim takes about 240 us with the server on any CPU and 120 us with it on the caller's.

So a race runs on one CPU of the process's own (under pytest-xdist, worker N takes the N-th
allowed CPU, so workers do not pile onto one): the controller is pinned for the length of a
run and put back after, pooled worker threads stay on it, and the companion processes (the
embedded servers, registered by ``add_companion`` once they serve) are moved onto it at the
first race and stay there. Where the platform has no affinity (macOS, Windows) or the
container forbids changing it, nothing is pinned and races are only slower.

Threads and processes a pinned thread starts inherit its CPU: what a worker starts (a client's
I/O thread, a helper process) stays on that one CPU after the race.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_set = getattr(os, "sched_setaffinity", None)
_get = getattr(os, "sched_getaffinity", None)
_companions: dict[int, int | None] = {}  # pid -> the CPU all its threads were last pinned to
_chosen: list[int] = []  # this process's race CPU, once chosen


def race_cpu() -> int | None:
    """The CPU this process's races run on (None: affinity cannot be set here)."""
    if _set is None or _get is None:
        return None
    if not _chosen:
        from xcomsim.env.naming import worker_number

        try:
            allowed = sorted(_get(0))
        except OSError:
            return None
        if not allowed:
            return None
        _chosen.append(allowed[worker_number() % len(allowed)])
    return _chosen[0]


def pin(cpu: int | None, tid: int = 0) -> bool:
    """Pin thread ``tid`` (0: the caller) to ``cpu``; False if it cannot be (nothing changed)."""
    if cpu is None or _set is None:
        return False
    try:
        _set(tid, {cpu})
    except OSError:
        return False
    return True


def add_companion(pid: int) -> None:
    """A process a race talks to synchronously (an embedded server): it joins the race's CPU."""
    _companions[pid] = None


def remove_companion(pid: int) -> None:
    _companions.pop(pid, None)


def _pin_process(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` (a new thread inherits its creator's CPU, so later ones follow)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:  # gone, or no /proc: leave it where it is
        _companions.pop(pid, None)
        return
    for tid in threads:
        pin(cpu, int(tid))
    _companions[pid] = cpu


@contextlib.contextmanager
def one_cpu() -> Iterator[int | None]:
    """Pin the calling thread and the companions to the race CPU; yield it (None: not pinned)."""
    cpu = race_cpu()
    if cpu is None:
        yield None
        return
    try:
        before = _get(0)  # type: ignore[misc]
    except OSError:
        yield None
        return
    if before != {cpu} and not pin(cpu):
        yield None
        return
    for pid, where in list(_companions.items()):
        if where != cpu:
            _pin_process(pid, cpu)
    try:
        yield cpu
    finally:
        if before != {cpu}:
            with contextlib.suppress(OSError):
                _set(0, before)  # type: ignore[misc]
