"""Samples of timings and their percentiles.

pytest-benchmark reports min/max/mean/median/IQR but no tail percentiles, and
a backend's tail (p95, p99) is what a task waiting on ``xcom_pull`` feels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between closest ranks.

    The same definition as numpy's default (Hyndman & Fan type 7): the 0th is the
    minimum, the 100th the maximum, and the 50th the median.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, got {q!r}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Seconds: the sample count, p50/p95/p99, mean, min and max."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        p50, p95, p99 = (percentile(samples, q) for q in PERCENTILES)
        return cls(len(samples), p50, p95, p99, sum(samples) / len(samples), min(samples), max(samples))

    def as_ms(self) -> dict[str, Any]:
        """Milliseconds, keyed ``p50_ms`` etc. (``n`` stays a count): for JSON and ``extra_info``."""
        return {"n": self.n, **{f"{name}_ms": round(getattr(self, name) * 1000, 4)
                                for name in ("p50", "p95", "p99", "mean", "min", "max")}}  # fmt: skip


def time_calls(
    action: Callable[..., object],
    rounds: int,
    *,
    warmup: int = 1,
    setup: Callable[[], tuple[Any, ...]] | None = None,
) -> list[float]:
    """Seconds of each of ``rounds`` calls; ``setup()`` (untimed) gives each call its arguments."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    samples = []
    for index in range(warmup + rounds):
        args = setup() if setup is not None else ()
        started = time.perf_counter()
        action(*args)
        elapsed = time.perf_counter() - started
        if index >= warmup:
            samples.append(elapsed)
    return samples
