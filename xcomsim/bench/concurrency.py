"""Throughput of several workers pushing and pulling at once, each its own task instance.

Every worker is a free-running thread acting as a different task instance of
one DAG run (no race scheduler): it pushes a value under a new key and pulls it
back, ``pairs`` times. Throughput is all workers' operations over the wall time
of the batch. Under the embedded default the metadata DB is one SQLite
connection lent to one borrower at a time and everything shares the GIL, so
the figure says how a backend behaves under contention, not how a cluster scales.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from xcomsim.bench.latency import XComProbe, payload


@dataclass(frozen=True)
class Batch:
    workers: int
    operations: int
    seconds: float

    @property
    def ops_per_second(self) -> float:
        return self.operations / self.seconds


class ConcurrentLoad:
    """One batch = every probe's thread doing ``pairs`` push-then-pull pairs of a ``size``-byte value."""

    def __init__(self, probes: Sequence[XComProbe], size: int, pairs: int):
        if pairs < 1:
            raise ValueError(f"pairs must be at least 1, got {pairs}")
        self.probes = list(probes)
        self.value = payload(size)
        self.pairs = pairs

    def _work(self, probe: XComProbe, errors: list[str]) -> None:
        try:
            for _ in range(self.pairs):
                key = probe.new_key()
                probe.push(key, self.value)
                if probe.pull(key) != self.value:
                    raise AssertionError(f"{probe.handle.label}: pulled a different value for {key}")
        except BaseException:  # noqa: BLE001 - re-raised by run() in the caller's thread
            errors.append(traceback.format_exc())

    def run(self) -> Batch:
        errors: list[str] = []
        threads = [threading.Thread(target=self._work, args=(p, errors), name=f"bench-{p.handle.label}")
                   for p in self.probes]  # fmt: skip
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if errors:
            cause = errors[0].strip().splitlines()[-1]  # the exception line: what one-line reports keep
            raise RuntimeError(f"{len(errors)} worker(s) failed; the first: {cause}\n{errors[0]}")
        return Batch(len(self.probes), 2 * self.pairs * len(self.probes), elapsed)
