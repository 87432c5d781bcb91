"""Faults injected at the same I/O points the scheduler switches at.

A ``FaultPlan`` says, per worker, at which of its I/O calls (counted from 0)
which fault happens. Only I/O that matters to the guarantees is counted and hit
(``interception.matters``): a ``MaskSecret`` or ``GetConnection`` message comes
and goes with caches, so counting it would move every index between runs. The plan is data, so Hypothesis draws it (``fault_plans``),
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
  ``except``/``finally`` cleanup of the backend's either (every later I/O of a
  dead worker raises too). At the task's ``SetXCom`` message this is a crash
  between the object upload and the row; at the I/O after a push-once guard is
  taken, a crash between the guard and the row.
- ``crash-after``: the call takes effect, then the worker dies before it sees
  the reply (e.g. the guard is created, or the row committed, and nothing more).
- ``api-lost-reply``: a message to the supervisor is handled (the ``xcom`` row
  is committed), then the reply is lost: the task sees ``ConnectionResetError``.
- ``s3-outage`` / ``redis-outage``: the store goes down from this call on: this
  and every later call of the worker to it fails (503 / connection refused),
  including the backend's cleanup (undo, release) after the failure.

Time, as a deployment has it (the world's clock must be running,
``xcomsim.env.clock``; ``run_workload`` starts it for these):

- ``slow-io`` (a kind, at an I/O): the call takes ``SLOW_SECONDS`` (longer than
  any lease the reference used) before it takes effect: time passes for
  everyone meanwhile.
- ``FaultPlan.skews`` (per worker, not at an I/O): the worker's host clock runs
  that many seconds off everyone else's from its start, as on a host whose
  clock is wrong (``SKEW_SECONDS``, 10 minutes, either way); servers it talks to
  keep the world's time.
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
# The faults after which a backend must still be live and clean (retries, undo, release): drawn by the
# liveness tests; the model test draws FAULT_KINDS.
LIVENESS_FAULT_KINDS = ("crash-after", "api-lost-reply", "s3-outage", "redis-outage")
# Faults of time: a worker's clock off by minutes, an operation slower than a lease (see the module docstring).
TIME_FAULT_KINDS = ("slow-io",)
ALL_FAULT_KINDS = FAULT_KINDS + LIVENESS_FAULT_KINDS + TIME_FAULT_KINDS
SKEW_SECONDS = 600.0
SLOW_SECONDS = 400.0
_SERVICE = {"s3-503": "s3 ", "s3-412": "s3 ", "s3-timeout": "s3 ", "redis-drop": "redis ",
            "redis-drop-after": "redis ", "crash": "", "crash-after": "", "api-lost-reply": "api ",
            "s3-outage": "s3 ", "redis-outage": "redis ", "slow-io": ""}  # fmt: skip
_OUTAGE = {"s3-outage": "s3-503", "redis-outage": "redis-drop"}  # what each later call to the store gets


def fits(kind: str, io: str) -> bool:
    """Whether a fault of ``kind`` can land on this I/O (an S3 fault on an S3 call, a crash anywhere)."""
    return io.startswith(_SERVICE[kind])


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
    skews: Mapping[str, float] = field(default_factory=dict)  # worker -> its host clock's offset, in seconds
    applied: list[AppliedFault] = field(default_factory=list)
    seen: dict[str, list[str]] = field(default_factory=dict)  # worker -> the I/O it made, in order
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.at.values()) - set(ALL_FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(ALL_FAULT_KINDS)}")

    def describe(self) -> str:
        skews = [f"{w}'s clock runs {s:+g}s off the world's" for w, s in sorted(self.skews.items()) if s]
        return "\n".join([*skews, *(str(f) for f in self.applied)]) or "(no fault landed on a matching I/O)"

    @property
    def moves_time(self) -> bool:
        """Whether the plan needs the world's clock running (a skewed worker, a slow call)."""
        return any(self.skews.values()) or any(kind in TIME_FAULT_KINDS for kind in self.at.values())

    def injector(self, worker: str) -> Callable[[str, Callable[[], Any]], Any] | None:
        if self.workers is not None and worker not in self.workers:
            return None
        seen = self.seen.setdefault(worker, [])
        down: set[str] = set()  # fault kinds of stores that are out for this worker
        dead: list[str] = []  # the I/O this worker died at, once it has

        def inject(io: str, call: Callable[[], Any]) -> Any:
            if not interception.matters(io):
                return call()
            index = len(seen)
            seen.append(io)
            if dead:
                raise WorkerCrash(f"the worker died at {dead[0]}; it does no more I/O ({io})")
            for outage in down:
                if io.startswith(_SERVICE[outage]):
                    return _FAULTS[_OUTAGE[outage]](io, call)
            kind = self.at.get(index)
            if kind is None or not fits(kind, io):
                return call()
            with self._lock:
                self.applied.append(AppliedFault(worker, index, io, kind))
            if kind in _OUTAGE:
                down.add(kind)
            if kind.startswith("crash"):
                dead.append(io)
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


def _crash_after(io: str, call: Callable[[], Any]) -> Any:
    call()
    raise WorkerCrash(f"crashed after {io} took effect, before its reply")


def _api_lost_reply(io: str, call: Callable[[], Any]) -> Any:
    call()
    raise ConnectionResetError(f"the supervisor's reply to {io.removeprefix('api ')} was lost (injected by xcomsim; "
                               "the request was handled)")  # fmt: skip


def _slow_io(io: str, call: Callable[[], Any]) -> Any:
    from xcomsim.env.clock import WORLD

    WORLD.advance(SLOW_SECONDS)  # the transfer takes this long; what it writes lands at its end
    return call()


_FAULTS: dict[str, Callable[[str, Callable[[], Any]], Any]] = {
    "s3-503": _s3_503, "s3-412": _s3_412, "s3-timeout": _s3_timeout,
    "redis-drop": _redis_drop, "redis-drop-after": _redis_drop_after, "crash": _crash,
    "crash-after": _crash_after, "api-lost-reply": _api_lost_reply,
    "s3-outage": _s3_503, "redis-outage": _redis_drop,
    "slow-io": _slow_io,
}  # fmt: skip


@contextlib.contextmanager
def injecting(plan: FaultPlan | None, worker: str = "main") -> Iterator[None]:
    """Apply ``plan`` to this thread's I/O (and its skew to this thread's clock) for the duration."""
    from xcomsim.env.clock import WORLD

    inject = plan.injector(worker) if plan is not None else None
    skew = plan.skews.get(worker, 0.0) if plan is not None else 0.0
    if inject is None and not skew:
        yield
        return
    with contextlib.ExitStack() as stack:
        if skew:
            stack.enter_context(WORLD.skewed(skew))
        if inject is not None:
            interception.install()
            interception.set_fault(inject)
            stack.callback(interception.set_fault, None)
        yield


def fault_plans(
    kinds: tuple[str, ...] = FAULT_KINDS, max_faults: int = 2, max_io: int = 12, workers: frozenset[str] | None = None
) -> st.SearchStrategy[FaultPlan]:
    """Plans of up to ``max_faults`` faults among each worker's first ``max_io`` I/O calls."""
    return st.dictionaries(st.integers(0, max_io - 1), st.sampled_from(kinds), max_size=max_faults).map(
        lambda at: FaultPlan(at, workers)
    )
