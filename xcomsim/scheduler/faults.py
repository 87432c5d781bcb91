"""Faults injected at the same I/O points the scheduler switches at.

A ``FaultPlan`` says, per worker, at which of its I/O calls (counted from 0)
which fault happens. The plan is data, so Hypothesis draws it (``fault_plans``),
replays it from the example and shrinks it to the one fault that matters. A
fault whose kind does not fit the I/O it lands on (an S3 error at a Redis call)
is not applied; ``FaultPlan.applied`` lists the ones that were, for the report.

Kinds, by where they land:

- ``s3-503``: the call fails with ``SlowDown`` (HTTP 503) before reaching S3.
- ``s3-412``: the call fails with ``PreconditionFailed`` (HTTP 412) before reaching S3.
- ``s3-timeout``: the call reaches S3 and takes effect, then the reply is lost
  (``ReadTimeoutError``): the caller cannot know whether it happened.
- ``redis-drop``: the connection drops before the command is sent.
- ``redis-drop-after``: the command runs, then the connection drops before the reply.
- ``crash``: the worker dies right there (any I/O); nothing after it runs, no
  ``except``/``finally`` cleanup of the backend's either. At the task's
  ``SetXCom`` message this is a crash between the object upload and the row.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from xcomsim.scheduler import interception

FAULT_KINDS = ("s3-503", "s3-412", "s3-timeout", "redis-drop", "redis-drop-after", "crash")
_SERVICE = {"s3-503": "s3 ", "s3-412": "s3 ", "s3-timeout": "s3 ", "redis-drop": "redis ",
            "redis-drop-after": "redis ", "crash": ""}  # fmt: skip


class WorkerCrash(BaseException):
    """The worker died here (not an Exception: nothing may catch it and clean up)."""


@dataclass(frozen=True)
class AppliedFault:
    worker: str
    io_index: int
    io: str
    kind: str

    def __str__(self) -> str:
        return f"{self.worker} I/O #{self.io_index} ({self.io}): {self.kind}"


@dataclass
class FaultPlan:
    """``at``: I/O index (per worker, from 0) -> fault kind; ``workers``: whom it hits (None: everyone)."""

    at: Mapping[int, str] = field(default_factory=dict)
    workers: frozenset[str] | None = None
    applied: list[AppliedFault] = field(default_factory=list)
    seen: dict[str, list[str]] = field(default_factory=dict)  # worker -> the I/O it made, in order
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.at.values()) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")

    def describe(self) -> str:
        return "\n".join(str(f) for f in self.applied) or "(no fault landed on a matching I/O)"

    def injector(self, worker: str) -> Callable[[str, Callable[[], Any]], Any] | None:
        if self.workers is not None and worker not in self.workers:
            return None
        seen = self.seen.setdefault(worker, [])

        def inject(io: str, call: Callable[[], Any]) -> Any:
            index = len(seen)
            seen.append(io)
            kind = self.at.get(index)
            if kind is None or not io.startswith(_SERVICE[kind]):
                return call()
            with self._lock:
                self.applied.append(AppliedFault(worker, index, io, kind))
            return _FAULTS[kind](io, call)

        return inject


def _client_error(code: str, status: int, message: str) -> Exception:
    from botocore.exceptions import ClientError

    error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(error, "xcomsim-injected")


def _s3_503(io: str, call: Callable[[], Any]) -> Any:
    raise _client_error("SlowDown", 503, "Please reduce your request rate. (injected by xcomsim)")


def _s3_412(io: str, call: Callable[[], Any]) -> Any:
    raise _client_error("PreconditionFailed", 412, "At least one of the preconditions failed. (injected by xcomsim)")


def _s3_timeout(io: str, call: Callable[[], Any]) -> Any:
    from botocore.exceptions import ReadTimeoutError

    call()
    raise ReadTimeoutError(endpoint_url=f"(injected by xcomsim after {io})")


def _redis_drop(io: str, call: Callable[[], Any]) -> Any:
    import redis

    raise redis.ConnectionError(f"Connection reset by peer (injected by xcomsim before {io})")


def _redis_drop_after(io: str, call: Callable[[], Any]) -> Any:
    import redis

    call()
    raise redis.ConnectionError(f"Connection reset by peer (injected by xcomsim after {io}; it ran)")


def _crash(io: str, call: Callable[[], Any]) -> Any:
    raise WorkerCrash(f"crashed before {io}")


_FAULTS: dict[str, Callable[[str, Callable[[], Any]], Any]] = {
    "s3-503": _s3_503, "s3-412": _s3_412, "s3-timeout": _s3_timeout,
    "redis-drop": _redis_drop, "redis-drop-after": _redis_drop_after, "crash": _crash,
}  # fmt: skip


@contextlib.contextmanager
def injecting(plan: FaultPlan | None, worker: str = "main") -> Iterator[None]:
    """Apply ``plan`` to this thread's I/O for the duration (``None``: nothing)."""
    inject = plan.injector(worker) if plan is not None else None
    if inject is None:
        yield
        return
    interception.install()
    interception.set_fault(inject)
    try:
        yield
    finally:
        interception.set_fault(None)


def fault_plans(
    kinds: tuple[str, ...] = FAULT_KINDS, max_faults: int = 2, max_io: int = 12, workers: frozenset[str] | None = None
) -> st.SearchStrategy[FaultPlan]:
    """Plans of up to ``max_faults`` faults among each worker's first ``max_io`` I/O calls."""
    return st.dictionaries(st.integers(0, max_io - 1), st.sampled_from(kinds), max_size=max_faults).map(
        lambda at: FaultPlan(at, workers)
    )
