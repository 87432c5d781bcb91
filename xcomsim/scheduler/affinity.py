"""One CPU for a race: its threads, and the embedded servers they talk to.

Only one scheduled thread runs at a time, so a second CPU buys a race nothing, while handing
the turn to a thread on another CPU costs two cross-CPU wake-ups (the lock, then the GIL):
a lock round trip takes about 60 us across CPUs on a 2-core VM and 5 us on one. A request to
an embedded server (fakeredis, moto: child processes) is the same story: a Redis claim takes
about 240 us with the server on any CPU and 120 us with it on the caller's.

So a race runs on one CPU of the process's own: under pytest-xdist worker N takes the N-th
allowed CPU counted from an offset drawn from the xdist run's id (so the workers of one run
do not share, and concurrent runs do not all start at CPU 0); otherwise the CPU the process
is on at its first race. The controller is pinned for the length of a run and put back
after; the run's worker threads (pooled, started by the pinned controller) stay on the race
CPU between races, as they run nothing else; any other thread started during the race (by a
worker: a client's I/O loop, which may outlive the race) is put back with the controller;
the companion processes (the embedded servers serving now, ``child_server.serving()``) are
moved onto the race CPU at the first race and stay there. A process a worker starts during a race keeps the race CPU. Where the
platform has no affinity (macOS, Windows) or the container forbids setting it, nothing is
pinned and races are only slower.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator

_set = getattr(os, "sched_setaffinity", None)
_get = getattr(os, "sched_getaffinity", None)
_companions: dict[int, int | None] = {}  # pid -> the CPU all its threads were last pinned to
_chosen: list[int | None] = []  # this process's race CPU (None: cannot pin), once chosen


def _current_cpu() -> int | None:
    """The CPU the calling thread last ran on (field 39 of its /proc stat line)."""
    try:
        with open("/proc/thread-self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[36])
    except (OSError, IndexError, ValueError):
        return None


def _choose(allowed: list[int]) -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        offset = zlib.crc32(os.environ.get("PYTEST_XDIST_TESTRUNUID", "").encode())
        return allowed[(offset + int(worker[2:])) % len(allowed)]
    here = _current_cpu()
    return here if here in allowed else allowed[os.getpid() % len(allowed)]


def race_cpu() -> int | None:
    """The CPU this process's races run on (None: affinity cannot be set here)."""
    if not _chosen:
        _chosen.append(None)
        if _set is not None and _get is not None:
            try:
                allowed = _get(0)
                _set(0, allowed)  # may this process set affinity at all? (a no-op if so)
            except OSError:
                return None
            if allowed:
                _chosen[0] = _choose(sorted(allowed))
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


def companions() -> dict[int, int | None]:
    """The processes a race talks to synchronously (the embedded servers serving now), each with the
    CPU it was last pinned to; a server that stopped serving is forgotten."""
    from xcomsim.env import child_server

    serving = child_server.serving()
    for pid in [pid for pid in _companions if pid not in serving]:
        del _companions[pid]
    for pid in serving:
        _companions.setdefault(pid, None)
    return _companions


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


def _put_back_new_threads(before: set[int], kept: set[int], cpu: int, allowed: set[int]) -> None:
    """Threads started during the race, other than ``kept``, go back to the process's CPUs."""
    for thread in threading.enumerate():
        native = thread.native_id
        if native is None or native in before or native in kept:
            continue
        with contextlib.suppress(OSError):
            if _get(native) == {cpu}:  # type: ignore[misc]
                _set(native, allowed)  # type: ignore[misc]


def _native_ids(threads: Iterable[threading.Thread]) -> set[int]:
    return {t.native_id for t in threads if t.native_id is not None}


@contextlib.contextmanager
def one_cpu(keep: Callable[[], Iterable[threading.Thread]] = tuple) -> Iterator[int | None]:
    """Pin the calling thread and the companions to the race CPU; yield it (None: not pinned).

    Threads started meanwhile go back to the process's CPUs after the block, except ``keep()``'s.
    """
    cpu = race_cpu()
    if cpu is None:
        yield None
        return
    try:
        before = _get(0)  # type: ignore[misc]
    except OSError:
        yield None
        return
    if before == {cpu}:  # already there (a run inside a run, a process pinned by its owner)
        yield cpu
        return
    threads = _native_ids(threading.enumerate())
    try:
        if not pin(cpu):
            yield None
            return
        for pid, where in list(companions().items()):
            if where != cpu:
                _pin_process(pid, cpu)
        yield cpu
    finally:
        with contextlib.suppress(OSError):
            _set(0, before)  # type: ignore[misc]
        _put_back_new_threads(threads, _native_ids(keep()), cpu, before)
