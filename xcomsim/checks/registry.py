"""The invariants, one registry: each named, each reported as its own guarantee.

Each invariant is a function from an ``Observation`` to a list of violations
(plain sentences); an empty list means it held. Checks read what actually
happened — the history of operations (each placed on one start/end sequence
shared by all workers), the ``xcom`` rows as stored, and every object of the
test's stores — never the backend's opinion of itself. An invariant asked to
judge an observation that lacks what it needs raises, rather than pass vacuously.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xcomsim.checks.values import references, refers_to, same
from xcomsim.scheduler.workload import History, Step
from xcomsim.strategies import Claim, Pull, Push, Release, Retry, Sweep

MAX_REFERENCE = 1024


@dataclass(frozen=True)
class ScopeAttempt:
    """A push (``source == caller``) or pull a task tried, whether the policy allows it, how it ended."""

    kind: str  # "push" or "pull"
    caller: str
    source: str
    key: str
    allowed: bool
    error: str | None = None
    caller_known: bool = True  # False: outside the task context (a callback), the backend cannot name the caller

    def __str__(self) -> str:
        what = f"{self.caller} push {self.key!r}" if self.kind == "push" else (
            f"{self.caller} pull {self.key!r} from {self.source}")  # fmt: skip
        return f"{what} ({'allowed' if self.allowed else 'not allowed'}) -> {self.error or 'ok'}"


@dataclass
class Observation:
    """What one check looks at; fill what the invariants you ask for need."""

    history: History | None = None
    stored_values: dict[str, Any] = field(default_factory=dict)  # key -> deserialised value in the xcom table
    rows: list[dict[str, Any]] | None = None  # the xcom rows as stored (raw value column)
    objects: Mapping[str, int] | None = None  # every store object now -> size in bytes
    objects_before: frozenset[str] = frozenset()  # objects there before the observed writes
    bucket: str = "xcomsim"
    threshold: int | None = None
    pushed_sizes: dict[str, int] = field(default_factory=dict)  # key -> serialised size of what was pushed
    scope_attempts: list[ScopeAttempt] | None = None
    unreadable: dict[str, str] | None = None  # key -> why its row cannot be pulled through the backend
    foreign: frozenset[str] | None = None  # objects in the stores that are not any XCom's own
    retry_replaces_failed_try: bool = False  # the backend's retry rule: a retry may replace a failed try's value

    def need(self, invariant: str, *names: str) -> None:
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"invariant {invariant!r} needs Observation.{', '.join(missing)}")


@dataclass(frozen=True)
class Invariant:
    name: str
    summary: str
    check: Callable[[Observation], list[str]]


class InvariantViolation(AssertionError):
    """A check failed; ``invariant`` names which, so reports can attribute it."""

    def __init__(self, invariant: str, problems: list[str], story: str = ""):
        self.invariant = invariant
        text = f"[{invariant}] " + "\n".join(problems)
        super().__init__(text + (f"\n\n{story}" if story else ""))


def _ok(step: Step) -> bool:
    return step.error is None


# ---------------------------------------------------------------------------- push-once, round trip
def _push_once(obs: Observation) -> list[str]:
    """Within one try a key is pushed once and its first value stays; across tries the latest try's first.

    Which later try may push a key an earlier try pushed is the retry rule's business (``fenced-tries``,
    ``retry-can-push``); a history without retries is judged exactly as before.
    """
    obs.need("push-once", "history")
    problems = []
    first: dict[tuple[str, int], Any] = {}
    for step in sorted(obs.history.steps, key=lambda s: s.end):  # type: ignore[union-attr]
        if isinstance(step.op, Push) and _ok(step):
            mine = (step.op.key, step.attempt)
            if mine in first:
                problems.append(
                    f"{step.worker}'s push of {step.op.key!r} (step #{step.index}) succeeded after "
                    f"{first[mine][0]} had pushed it in the same try ({step.attempt}): the second push must raise"
                )
            else:
                first[mine] = (step.worker, step.op.value)
    latest: dict[str, int] = {}
    for key, attempt in first:
        latest[key] = max(attempt, latest.get(key, attempt))
    for key, attempt in latest.items():
        worker, value = first[(key, attempt)]
        if key in obs.stored_values and not same(obs.stored_values[key], value):
            problems.append(
                f"the first value of {key!r} ({worker}: {value!r}) was replaced by {obs.stored_values[key]!r}"
            )
    return problems


def _fenced_tries(obs: Observation) -> list[str]:
    """An earlier try's write never replaces what a later try of the task instance pushed and read back."""
    obs.need("fenced-tries", "history")
    steps = sorted(obs.history.steps, key=lambda s: s.end)  # type: ignore[union-attr]
    pushes = [s for s in steps if isinstance(s.op, Push) and _ok(s)]
    problems = []
    for key in sorted({s.op.key for s in pushes}):
        mine = [s for s in pushes if s.op.key == key]
        latest = max(s.attempt for s in mine)
        if key in obs.stored_values:
            stored = obs.stored_values[key]
            by = sorted({s.attempt for s in mine if same(s.op.value, stored)})
            if by and by[-1] < latest:
                later = next(s for s in mine if s.attempt == latest)
                problems.append(
                    f"{key!r} holds {stored!r}, try {by[-1]}'s value, although try {latest} ({later.worker}, "
                    f"step #{later.index}) pushed {later.op.value!r} and its push succeeded: an earlier try's "
                    "write replaced a later try's value"
                )
    for pull in (s for s in steps if isinstance(s.op, Pull) and _ok(s)):
        own = [s for s in pushes if s.worker == pull.worker and s.op.key == pull.op.key and s.end < pull.start]
        if not own:
            continue
        attempt = own[-1].attempt
        allowed = [s.op.value for s in steps if isinstance(s.op, Push) and s.op.key == pull.op.key
                   and s.attempt >= attempt]  # fmt: skip
        if not any(same(pull.result, value) for value in allowed):
            problems.append(
                f"{pull.worker} (try {attempt}) pushed {pull.op.key!r} ({own[-1].op.value!r}), then pulled "
                f"{pull.result!r} (step #{pull.index}): an earlier try's write replaced it"
            )
    return problems


def _round_trip_exact(obs: Observation) -> list[str]:
    obs.need("round-trip-exact", "history")
    pushed: dict[str, list[Any]] = {}
    for step in obs.history.steps:  # type: ignore[union-attr]
        if isinstance(step.op, Push):  # a failed push may still have landed (a lost reply)
            pushed.setdefault(step.op.key, []).append(step.op.value)
    problems = []
    for step in obs.history.steps:  # type: ignore[union-attr]
        if isinstance(step.op, Pull) and _ok(step) and step.result is not None:
            candidates = pushed.get(step.op.key, [])
            if not any(same(step.result, value) for value in candidates):
                problems.append(f"{step.worker} pulled {step.op.key!r} as {step.result!r}; pushed: {candidates!r}")
    for key, value in obs.stored_values.items():
        if key in pushed and not any(same(value, v) for v in pushed[key]):
            problems.append(f"{key!r} reads back as {value!r}; pushed: {pushed[key]!r}")
    return problems


# ---------------------------------------------------------------------------- claims
def _holds(win: Step, at: Step, steps: list[Step], surely: bool) -> bool:
    """Whether ``win``'s claim is still held when ``at`` runs: not released before, lease not expired.

    The store stamps a lease somewhere inside the winning operation, so expiry is
    only bounded, and a release may overlap ``at``: ``surely=True`` asks "held for
    certain" (an expiry or release that may have come first counts), ``surely=False``
    asks "possibly held".
    """
    lease = win.op.lease_seconds  # type: ignore[union-attr]
    if lease is not None:
        expired = (win.clock + lease <= at.finished_at) if surely else (win.finished_at + lease <= at.clock)
        if expired:
            return False
    return not any(
        isinstance(s.op, Release) and s.op.claim_id == win.op.claim_id and s.worker == win.worker  # type: ignore[union-attr]
        and s.result and win.end < s.end < (at.end if surely else at.start)
        for s in steps
    )


def _wins(steps: list[Step]) -> list[Step]:
    return [s for s in steps if isinstance(s.op, Claim) and _ok(s) and s.result]


def _exactly_one_claim_winner(obs: Observation) -> list[str]:
    obs.need("exactly-one-claim-winner", "history")
    steps = obs.history.steps  # type: ignore[union-attr]
    problems = []
    for win in _wins(steps):
        for other in _wins(steps):
            if (other.op.claim_id == win.op.claim_id and other.worker != win.worker  # type: ignore[union-attr]
                    and other.end < win.end and _holds(other, win, steps, surely=True)):  # fmt: skip
                problems.append(
                    f"{win.worker} won claim {win.op.claim_id!r} (step #{win.index}) while {other.worker} "  # type: ignore[union-attr]
                    f"held it (won at step #{other.index}, not released, lease not expired)"
                )
                break
    return problems


def _no_lost_claim(obs: Observation) -> list[str]:
    obs.need("no-lost-claim", "history")
    steps = obs.history.steps  # type: ignore[union-attr]
    problems = []
    for step in steps:
        if not (isinstance(step.op, Claim) and _ok(step) and not step.result):
            continue
        blockers = [w for w in _wins(steps) if w.op.claim_id == step.op.claim_id and w is not step  # type: ignore[union-attr]
                    and w.start < step.end and _holds(w, step, steps, surely=False)]  # fmt: skip
        if not blockers:
            problems.append(
                f"{step.worker}'s claim of {step.op.claim_id!r} (step #{step.index}) was refused, but no one "
                f"held it: every earlier holder had released it or let its lease expire"
            )
    return problems


# ---------------------------------------------------------------------------- scoping
def _scope(kind: str) -> Callable[[Observation], list[str]]:
    def check(obs: Observation) -> list[str]:
        obs.need(f"{kind}-scope", "scope_attempts")
        problems = []
        for attempt in obs.scope_attempts or []:
            if attempt.kind != kind:
                continue
            if attempt.allowed and attempt.error:
                problems.append(f"refused although the policy allows it: {attempt}")
            elif not attempt.allowed and not attempt.error:
                problems.append(f"allowed although the policy does not: {attempt}")
            elif not attempt.allowed:
                names = {attempt.source, attempt.key} | ({attempt.caller} if attempt.caller_known else set())
                missing = [n for n in names if n not in attempt.error]  # type: ignore[operator]
                if missing:
                    problems.append(f"the refusal does not name {missing}: {attempt}")
        return problems

    return check


# ---------------------------------------------------------------------------- offload and stores
def _offload_threshold(obs: Observation) -> list[str]:
    obs.need("offload-threshold", "rows", "objects", "threshold")
    threshold = obs.threshold or 0
    by_key = {row["key"]: row["value"] for row in obs.rows or []}
    problems = []
    for key, size in obs.pushed_sizes.items():
        if key not in by_key:
            problems.append(f"{key!r} ({size} B) has no row")
            continue
        row = str(by_key[key])
        row_bytes = len(row.encode())
        existing = [n for n in obs.objects or {} if n not in obs.objects_before and refers_to(row, n)]
        if size >= threshold and (not existing or row_bytes > MAX_REFERENCE):
            problems.append(f"{key!r}: {size} B (>= {threshold}) but the row is {row_bytes} B and refers to "
                            f"{len(existing)} new object(s); it must be a reference of <= {MAX_REFERENCE} B")  # fmt: skip
        if size < threshold and (existing or row_bytes < size - 2):
            problems.append(f"{key!r}: {size} B (< {threshold}) but not stored inline (row of {row_bytes} B)")
    return problems


def _value_objects(obs: Observation) -> dict[str, int]:
    floor = obs.threshold or 0
    return {n: size for n, size in (obs.objects or {}).items() if n not in obs.objects_before and size >= floor}


def _purge_leaves_no_orphan(obs: Observation) -> list[str]:
    obs.need("purge-leaves-no-orphan", "rows", "objects", "threshold")
    rows = [str(row["value"]) for row in obs.rows or []]
    orphans = sorted(n for n in _value_objects(obs) if not any(refers_to(row, n) for row in rows))
    return [f"{len(orphans)} value-sized object(s) no row references: {orphans[:3]}"] if orphans else []


def _no_dangling_reference(obs: Observation) -> list[str]:
    obs.need("no-dangling-reference", "rows", "objects")
    present = set(obs.objects or {})
    problems = []
    for row in obs.rows or []:
        for name in sorted(references(row["value"], obs.bucket) - present):
            problems.append(f"row {row['task_id']}/{row['key']} refers to {name}, which does not exist")
    return problems


# ---------------------------------------------------------------------------- liveness and cleanup
_INJECTED = "injected by xcomsim"


def _retry_can_push(obs: Observation) -> list[str]:
    obs.need("retry-can-push", "history")
    steps = sorted(obs.history.steps, key=lambda s: s.end)  # type: ignore[union-attr]
    retries = [s for s in steps if isinstance(s.op, Retry) and _ok(s)]
    problems = []
    for step in steps:
        if not (isinstance(step.op, Push) and step.error and step.error_type != "Crash"):
            continue
        if _INJECTED in step.error:
            continue  # this push was itself hit by a fault
        if step.op.key in obs.stored_values and not obs.retry_replaces_failed_try:
            continue  # a value is stored and the backend keeps it across tries: refusing is push-once
        later = [r for r in retries if r.end < step.start]
        if later:
            problems.append(
                f"{step.worker}'s push of {step.op.key!r} (step #{step.index}) in try {later[-1].result} was refused "
                f"although no value of {step.op.key!r} is stored: {step.error_type}: {step.error}"
            )
    return problems


def _refusal_leaves_nothing(obs: Observation) -> list[str]:
    """A push refused by the backend, with no value stored, must not stop the same try pushing the key again."""
    obs.need("refusal-leaves-nothing", "history")
    steps = sorted(obs.history.steps, key=lambda s: s.end)  # type: ignore[union-attr]
    problems = []
    for n, step in enumerate(steps):
        if not (isinstance(step.op, Push) and step.error and step.error_type != "Crash") or _INJECTED in step.error:
            continue
        for later in steps[n + 1:]:
            if later.worker != step.worker or isinstance(later.op, Retry):
                break
            if isinstance(later.op, Push) and later.op.key == step.op.key and later.error and (
                    step.op.key not in obs.stored_values):  # fmt: skip
                problems.append(
                    f"{step.worker}'s push of {step.op.key!r} was refused ({step.error_type}), nothing is stored, "
                    f"and its next push of {step.op.key!r} (step #{later.index}) failed too: {later.error_type}: "
                    f"{later.error}"
                )
                break
    return problems


def _purge_deletes_only_its_own(obs: Observation) -> list[str]:
    obs.need("purge-deletes-only-its-own", "objects", "foreign")
    gone = sorted(n for n in obs.foreign or () if n not in (obs.objects or {}))
    return [f"{len(gone)} object(s) that were not the deleted XCom's own were deleted: {gone[:3]}"] if gone else []


def _gc_safe_with_inflight_pushes(obs: Observation) -> list[str]:
    obs.need("gc-safe-with-inflight-pushes", "history", "unreadable")
    steps = obs.history.steps  # type: ignore[union-attr]
    sweeps = [s for s in steps if isinstance(s.op, Sweep)]
    problems = []
    for step in steps:
        if sweeps and isinstance(step.op, Push) and _ok(step) and step.op.key in (obs.unreadable or {}):
            during = [s for s in sweeps if s.start < step.end and step.start < s.end]
            sweep = (during or sweeps)[0]
            problems.append(
                f"{step.worker}'s push of {step.op.key!r} (step #{step.index}) landed, but its value is gone after "
                f"{'a sweep that ran during it' if during else 'a sweep'} ({sweep.worker}, step #{sweep.index}): "
                f"{obs.unreadable[step.op.key]}"  # type: ignore[index]
            )
    return problems


INVARIANTS: dict[str, Invariant] = {
    inv.name: inv
    for inv in (
        Invariant("exactly-one-claim-winner", "no claim is won while another worker holds it",
                  _exactly_one_claim_winner),
        Invariant("no-lost-claim", "a released or expired claim can be claimed again", _no_lost_claim),
        Invariant("push-once", "a second push of an XCom in one try raises and the first value stays", _push_once),
        Invariant("fenced-tries", "an earlier try's late write never replaces what a later try pushed, whatever "
                  "the clocks say and however slow its I/O", _fenced_tries),
        Invariant("push-scope", "a task pushes only its declared keys; a refusal names task and key",
                  _scope("push")),
        Invariant("pull-scope", "a task pulls only keys allowed from that source; a refusal names caller, "
                  "source and key", _scope("pull")),
        Invariant("offload-threshold", "at/above the threshold the row is a reference (<= 1 KiB) to an object "
                  "that exists; below, the value is inline", _offload_threshold),
        Invariant("round-trip-exact", "a pulled value equals, type for type, what was pushed", _round_trip_exact),
        Invariant("purge-leaves-no-orphan", "no value-sized object is left that no row references",
                  _purge_leaves_no_orphan),
        Invariant("no-dangling-reference", "no row refers to an object that does not exist",
                  _no_dangling_reference),
        Invariant("retry-can-push", "after a crashed or failed push, the task's next try can push the key when "
                  "no value is stored", _retry_can_push),
        Invariant("refusal-leaves-nothing", "a push the backend refuses leaves nothing behind: the same try can "
                  "push the key again", _refusal_leaves_nothing),
        Invariant("purge-deletes-only-its-own", "purge and the sweeper never delete an object that is not the "
                  "XCom's own, even when a row holds a forged reference", _purge_deletes_only_its_own),
        Invariant("gc-safe-with-inflight-pushes", "a sweep concurrent with pushes deletes no value whose row lands",
                  _gc_safe_with_inflight_pushes),
    )
}  # fmt: skip


def violations(name: str, obs: Observation) -> list[str]:
    return INVARIANTS[name].check(obs)


def check_all(obs: Observation, names: list[str] | None = None) -> dict[str, list[str]]:
    return {name: INVARIANTS[name].check(obs) for name in (names or list(INVARIANTS))}


def require(names: str | list[str], obs: Observation, story: str = "") -> None:
    """Raise ``InvariantViolation`` for the first named invariant that does not hold."""
    for name in [names] if isinstance(names, str) else names:
        problems = INVARIANTS[name].check(obs)
        if problems:
            raise InvariantViolation(name, problems, story)
