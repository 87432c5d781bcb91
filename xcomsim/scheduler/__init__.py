"""The deterministic race scheduler and the I/O points it switches workers at."""

from __future__ import annotations

from xcomsim.scheduler.scheduler import (
    HARNESS_PROBLEM,
    Event,
    HarnessAbandoned,
    HarnessStuck,
    Scheduler,
    SchedulerStuck,
    Timeline,
    WorkerResult,
    first_runnable,
    hypothesis_chooser,
    stop_at_harness_errors,
)

__all__ = [
    "HARNESS_PROBLEM",
    "Event",
    "HarnessAbandoned",
    "HarnessStuck",
    "Scheduler",
    "SchedulerStuck",
    "Timeline",
    "WorkerResult",
    "first_runnable",
    "hypothesis_chooser",
    "stop_at_harness_errors",
]
