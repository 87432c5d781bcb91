"""The deterministic race scheduler and the I/O points it switches workers at."""

from __future__ import annotations

from xcomsim.scheduler.scheduler import (
    Event,
    Scheduler,
    SchedulerStuck,
    Timeline,
    WorkerResult,
    first_runnable,
    hypothesis_chooser,
)

__all__ = [
    "Event",
    "Scheduler",
    "SchedulerStuck",
    "Timeline",
    "WorkerResult",
    "first_runnable",
    "hypothesis_chooser",
]
