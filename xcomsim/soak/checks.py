"""A soak's history and end state, judged by the simulation's invariants registry, into the kit's verdicts.

Every guarantee is checked by the same function of ``xcomsim.checks`` that
judges a simulated race: the soak only builds its ``Observation`` from what real
processes did (one observation per XCom coordinate, per claim, or for the whole
store). A guarantee the backend does not claim is "not claimed"; one the
workload never exercised is "not run" with the reason; a broken one names the
history operations that break it.

Push-once is judged within each try; what a later try of the same task
instance may do with a key an earlier try pushed is the backend's retry rule
(``RetryRule``), reported as ``retry-rule``: the fencing rule ExclusiveXCom
implements when the backend declares it (``retry_replaces_failed_try``), else
push-once across tries. ``fenced-tries`` (an earlier try's write never replaces
a later try's value) is the registry's, as in the kit.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xcomsim.checks import INVARIANTS, Observation, ScopeAttempt
from xcomsim.conformance.verdict import BROKEN, CANNOT_TEST, Verdicts
from xcomsim.scheduler.workload import History as StepHistory
from xcomsim.scheduler.workload import Step
from xcomsim.soak import tasks
from xcomsim.soak.history import History, Operation
from xcomsim.strategies import Claim, Pull, Push, Release, Retry, Sweep

RETRY = "retry-rule"
READ_THEN_REPLACED = "no value a downstream task read is later replaced"


ACCEPT, REFUSE, EITHER = "accept", "refuse", "either"


@dataclass(frozen=True)
class RetryRule:
    """What a later try of a task instance may do with a key an earlier try pushed: the backend's retry rule.

    ``replaces_failed_try`` is ExclusiveXCom's rule (``xcomsim.backend.guard``;
    a backend declares it as ``xcomsim_contract["retry_replaces_failed_try"]``):
    a retry (same run, same clear generation) takes over and replaces the
    earlier try's value, committed or not; after a clear a push is accepted when
    nothing is stored, the value is identical, or ``retry_replaces`` is set; an
    earlier try never wins. Without it, push-once holds across tries: a later
    try's push is accepted only when nothing is stored (the identical value may
    be accepted or refused). ``retry_replaces``: the DAG's ``XComPolicy`` sets it.
    """

    name: str
    replaces_failed_try: bool
    retry_replaces: bool = False

    def expects(self, earlier: list[Operation], later: Operation) -> str:
        """ACCEPT, REFUSE or EITHER for ``later``, a push by a later try than every push in ``earlier``."""
        committed = [e for e in earlier if e.outcome == "ok" and _run(e) == _run(later)]  # another run's rows
        if not committed:  # went with it; a try that died or was refused stored nothing (or a row the rule lets
            return ACCEPT if self.replaces_failed_try or not earlier else EITHER  # a retry replace)
        last = max(committed, key=lambda e: e.try_number)
        identical = last.fields.get("digest") == later.fields.get("digest")
        if self.retry_replaces or (self.replaces_failed_try and _clear(last) == _clear(later)):
            return ACCEPT  # a retry of the try that pushed it (that try failed: Airflow started this one)
        if identical:
            return ACCEPT if self.replaces_failed_try else EITHER
        return REFUSE


FENCING_RULE = RetryRule("the fencing rule: a retry replaces the value of the try it retries; an earlier try never "
                         "wins", replaces_failed_try=True)  # fmt: skip
STRICT_RULE = RetryRule("push-once across tries: a later try's push of a committed key is refused",
                        replaces_failed_try=False)  # fmt: skip
RETRY_RULE = FENCING_RULE  # what the reference backend implements


def rule_for(claims: Claims) -> RetryRule:
    """The rule the backend declares: the fencing rule, or push-once across tries."""
    return FENCING_RULE if claims.retry_replaces_failed_try else STRICT_RULE


def _clear(op: Operation) -> int:
    return int(op.fields.get("clear") or 0)  # the run's clear_number: a clear starts a new generation


def _run(op: Operation) -> Any:
    return op.fields.get("run_after")  # another run of a reused run_id has another


@dataclass(frozen=True)
class Claims:
    """What the backend declares, as the kit reads it (``xcomsim_contract``)."""

    push_once: bool
    scoping: bool
    claims: bool
    offload_threshold: int | None
    sweeper: bool
    retry_replaces_failed_try: bool = False  # the fencing rule (``RetryRule``)


@dataclass
class Judged:
    verdicts: Verdicts
    violating: dict[str, list[int]] = field(default_factory=dict)  # guarantee -> history operation indexes
    notes: list[str] = field(default_factory=list)


class _Clock:
    """Operation times as ranks on one sequence, the shape the registry's steps carry."""

    def __init__(self, history: History):
        points = sorted({o.start for o in history.operations} | {o.end for o in history.operations if o.end})
        self.rank = {t: i + 1 for i, t in enumerate(points)}
        self.never = len(points) + 10

    def start(self, op: Operation) -> int:
        return self.rank[op.start]

    def end(self, op: Operation) -> int:
        return self.never if op.end is None else self.rank[op.end]


def _step(op: Operation, clock: _Clock, operation: Any, worker: str, result: Any = None,
          faults: list[tuple[float, float]] = ()) -> Step:  # fmt: skip
    """``faults``: windows of a service fault (a store restarted, connections dropped): an error in one is the
    fault's, as the kit marks the errors it injects."""
    error, error_type = op.error, op.error_type
    if op.outcome == "died":
        error, error_type = "the process was killed inside the operation (injected by xcomsim)", "Crash"
    elif error and op.end is not None and any(start <= op.end <= end for start, end in faults):
        error = f"{error} (during a service fault {INJECTED})"
    return Step(op.index, worker, operation, result, error, error_type, clock.start(op), clock.end(op), op.start,
                op.end if op.end is not None else float("inf"), op.try_number)  # fmt: skip


INJECTED = "injected by xcomsim"  # the mark of a fault's error, which the registry's checks do not hold against a backend
SERVICE_FAULTS = ("restart", "drop-connections")  # the nemesis's names (a store stopped, PostgreSQL's connections dropped)
FAULT_SETTLES = 5.0  # seconds after a service fault ends in which its errors still surface (a reconnect)


def _fault_windows(history: History) -> list[tuple[float, float]]:
    return [(n["t"], (n.get("ended") or n["t"]) + FAULT_SETTLES) for n in history.nemesis
            if n.get("fault") in SERVICE_FAULTS]  # fmt: skip


def judge(history: History, end_state: dict[str, Any], plan: dict[str, Any], claims: Claims,
          rule: RetryRule | None = None) -> Judged:  # fmt: skip
    """Every guarantee's verdict for this soak; ``rule``: the retry rule, else the one the backend declares."""
    rule = rule_for(claims) if rule is None else rule
    verdicts = Verdicts(backend=end_state.get("backend", ""))
    judged = Judged(verdicts)
    clock = _Clock(history)
    rows = {_row_coordinate(r): r for r in end_state["rows"]}
    pushes = defaultdict(list)
    for op in history.of("push"):
        pushes[op.coordinate()].append(op)
    values = _Values(plan)

    def record(name: str, claimed: bool, reason: str, observations: list[tuple[Observation, list[int]]],
               not_run: str, extra: Callable[[], list[tuple[str, list[int]]]] | None = None,
               invariant: str | None = None) -> None:  # fmt: skip
        if not claimed:
            verdicts.record(name, "skipped", f"not claimed: {reason}")
            return
        problems: list[tuple[str, list[int]]] = []
        for observation, ops in observations:
            problems += [(p, ops) for p in INVARIANTS[invariant or name].check(observation)]
        problems += extra() if extra else []
        if not observations and not problems:
            verdicts.record(name, "skipped", f"{CANNOT_TEST}{not_run}")
            return
        if problems:
            judged.violating[name] = sorted({i for _, ops in problems for i in ops})
            lines = [f"{len(problems)} violation(s) in the soak's history"] + [p for p, _ in problems[:8]]
            lines += [history.operations[i].describe() for i in judged.violating[name][:12]]
            verdicts.record(name, "failed", "\n".join(f"Violation: [{name}] {line}" for line in lines))
        else:
            verdicts.record(name, "passed")

    # push-once, round trips, retries: one observation per coordinate; push-once within each try, and across
    # tries the backend's retry rule
    faults = _fault_windows(history)
    push_obs, trip_obs, retry_obs, fenced_obs = [], [], [], []
    retry_problems: list[tuple[str, list[int]]] = []
    for coordinate, ops in pushes.items():
        row = rows.get(coordinate)
        stored = {} if row is None or "digest" not in row else {coordinate: values.from_row(row, ops)}
        steps = [_step(o, clock, Push(coordinate, values.pushed(o)), f"{o.process} try {o.try_number}", faults=faults)
                 for o in ops]  # fmt: skip
        push_obs.append((Observation(history=StepHistory(steps=steps), stored_values=stored), [o.index for o in ops]))
        pulls = [o for o in history.of("pull") if _pulled(o) == coordinate and o.outcome == "ok"]
        trip_steps = steps + [_step(p, clock, Pull(coordinate), f"{p.process} try {p.try_number}",
                                    values.from_pull(p, ops)) for p in pulls]  # fmt: skip
        trip_obs.append((Observation(history=StepHistory(steps=trip_steps), stored_values=stored),
                         [o.index for o in ops + pulls]))  # fmt: skip
        retry_obs += _retry_observations(ops, steps, stored, rule)
        if len({o.try_number for o in ops}) > 1:  # the rule is exercised
            fenced_obs.append(push_obs[-1])
            retry_problems += _check_rule(rule, ops, steps)

    read_then_replaced = _read_then_replaced(history, rows)
    record("push-once", claims.push_once, "a second push replaces the first, as Airflow's BaseXCom does",
           push_obs, "no push ran", lambda: read_then_replaced)  # fmt: skip
    record("round-trip-exact", True, "", trip_obs, "no value was pushed and pulled",
           lambda: _unreadable(history, end_state, rows))  # fmt: skip

    # scope
    attempts, scope_ops = _scope_attempts(history)
    for kind in ("push", "pull"):
        mine = [a for a in attempts if a.kind == kind]
        record(f"{kind}-scope", claims.scoping, "the backend declares no XCom policy it enforces",
               [(Observation(scope_attempts=mine), scope_ops[kind])] if mine else [], f"no {kind} was attempted")

    # claims, judged per claim id on this machine's clock (the clock of the servers that keep leases)
    for name in ("exactly-one-claim-winner", "no-lost-claim"):
        # A claim that failed or died may have taken effect (its connection dropped after the commit): never a
        # certain winner, but a possible holder when judging whether a refusal had a reason
        claim_obs = _claim_observations(history, clock, unknown_wins=name == "no-lost-claim")
        record(name, claims.claims, "the backend declares no claim store", claim_obs, "no claim was attempted")

    # stores, at the end (after gc)
    objects = end_state.get("objects", {})
    raw_rows = [{"key": _row_coordinate(r), "value": r["value"], "task_id": r["task_id"]} for r in end_state["rows"]]
    bucket = next((name.split("/")[2] for name in objects if name.startswith("s3://")), "none")  # Redis values too
    offload_obs = []
    if claims.offload_threshold is not None:
        for coordinate, ops in pushes.items():
            row = rows.get(coordinate)
            winner = next((o for o in ops if o.outcome == "ok" and row is not None and
                           o.fields.get("digest") == row.get("digest")), None)  # fmt: skip
            if winner is not None:
                offload_obs.append((Observation(rows=[{"key": coordinate, "value": row["value"]}], objects=objects,
                                                threshold=claims.offload_threshold,
                                                pushed_sizes={coordinate: values.size(winner)}), [winner.index]))  # fmt: skip
    record("offload-threshold", claims.offload_threshold is not None, "the backend declares no offload",
           offload_obs, "no value was pushed")  # fmt: skip
    whole = Observation(rows=raw_rows, objects=objects, threshold=claims.offload_threshold or 0, bucket=bucket,
                        objects_before=frozenset(end_state.get("objects_elsewhere", ())))  # fmt: skip
    stored_anything = bool(end_state["rows"])
    for name in ("purge-leaves-no-orphan", "no-dangling-reference"):
        record(name, claims.offload_threshold is not None, "the backend declares no offload",
               [(whole, [])] if stored_anything else [], "no row was stored")  # fmt: skip
    record("retry-can-push", claims.push_once, "push-once is not claimed: a retry simply pushes again", retry_obs,
           "no task was retried")  # fmt: skip
    record("fenced-tries", claims.push_once, "push-once is not claimed", fenced_obs, "no later try pushed a key")
    record(RETRY, claims.push_once, "push-once is not claimed", fenced_obs, "no later try pushed a key",
           lambda: retry_problems, invariant="push-once")  # fmt: skip
    record("gc-safe-with-inflight-pushes", claims.sweeper, "the backend declares no sweeper",
           _gc_observations(history, clock, end_state, pushes, values), "gc never ran during the workload")
    verdicts.record("purge-deletes-only-its-own", "skipped",
                    f"{CANNOT_TEST}the soak forges no rows (the kit does)")  # fmt: skip
    judged.notes += _retry_notes(history, end_state, rule)
    return judged


# ------------------------------------------------------------------ values
class _Values:
    """What each try pushed, rebuilt from the plan: the history records digests, not values."""

    def __init__(self, plan: dict[str, Any]):
        self.sizes = plan["sizes"]

    def pushed(self, op: Operation) -> Any:
        f = op.fields
        return tasks.value_for(f["run_id"], f["map_index"], f["key"], op.try_number, self.sizes, bool(f.get("again")))

    def size(self, op: Operation) -> int:
        return len(json.dumps(self.pushed(op), ensure_ascii=False, separators=(",", ":")).encode())

    def _matching(self, digest: str | None, ops: list[Operation]) -> Any:
        from xcomsim.soak.probe import digest as digest_of

        for op in ops:
            value = self.pushed(op)
            if digest_of(value) == digest:
                return value
        return _Unknown(digest)

    def from_row(self, row: dict[str, Any], ops: list[Operation]) -> Any:
        return self._matching(row.get("digest"), ops)

    def from_pull(self, pull: Operation, ops: list[Operation]) -> Any:
        return None if pull.fields.get("digest") is None else self._matching(pull.fields.get("digest"), ops)


@dataclass(frozen=True)
class _Unknown:
    """A value that is none of those pushed (its digest is all that is known)."""

    digest: str | None

    def __repr__(self) -> str:
        return f"<a value no try pushed, digest {self.digest}>"


def _row_coordinate(row: dict[str, Any]) -> str:
    return f"{row['dag_id']}/{row['run_id']}/{row['task_id']}/{row['map_index']}/{row['key']}"


def _pulled(op: Operation) -> str:
    f = op.fields
    return f"{f.get('dag_id')}/{f.get('run_id')}/{f.get('source')}/{f.get('source_map')}/{f.get('key')}"


# ------------------------------------------------------------------ retries
def _check_rule(rule: RetryRule, ops: list[Operation], steps: list[Step]) -> list[tuple[str, list[int]]]:
    """Each later try's push did what the rule says; an earlier try's push begun after a later try's committed
    never succeeds (it is fenced off)."""
    problems = []
    ended = {s.index: s for s in steps}
    firsts = [o for o in ops if not o.fields.get("again")]  # a try's second push is push-once's, within the try
    for later in firsts:
        earlier = [e for e in firsts if e.try_number < later.try_number and e.start < later.start]
        if not earlier:
            continue
        expected = rule.expects(earlier, later)
        what = f"{later.process} try {later.try_number}: push of {later.fields.get('key')!r}"
        failed = later.outcome == "error" and INJECTED not in (ended[later.index].error or "")
        overtaken = any(o.try_number > later.try_number and o.start < (later.end or float("inf")) for o in ops)
        if expected == ACCEPT and failed and not overtaken:
            problems.append((f"{what} refused although {rule.name} accepts it: {later.error_type}: {later.error}",
                             [e.index for e in earlier] + [later.index]))  # fmt: skip
        elif expected == REFUSE and later.outcome == "ok":
            problems.append((f"{what} succeeded although {rule.name} refuses it (try "
                             f"{max(e.try_number for e in earlier)} committed a different value)",
                             [e.index for e in earlier] + [later.index]))  # fmt: skip
    for zombie in ops:
        newer = [o for o in ops if o.try_number > zombie.try_number and o.outcome == "ok" and o.end is not None
                 and o.end < zombie.start]  # fmt: skip
        if newer and zombie.outcome == "ok":
            problems.append((f"{zombie.process} try {zombie.try_number}: push of {zombie.fields.get('key')!r} "
                             f"succeeded after try {newer[0].try_number} had pushed it: an earlier try must be fenced "
                             "off", [newer[0].index, zombie.index]))  # fmt: skip
    return problems


def _retry_observations(ops: list[Operation], steps: list[Step], stored: dict[str, Any],
                        rule: RetryRule) -> list[tuple[Observation, list[int]]]:  # fmt: skip
    """One observation per later try: the ``Retry`` just before that try's first push, then that try's pushes (an
    earlier try's push after it is a zombie's, fenced off by design: not the retry's to make)."""
    observations = []
    for number in sorted({o.try_number for o in ops if o.try_number > 1}):
        again = {o.index for o in ops if o.fields.get("again")}  # refused by push-once within the try: not a retry's
        mine = [s for s in steps if s.attempt == number and s.index not in again]
        first = min(mine, key=lambda s: s.start)
        retry = Step(first.index, first.worker, Retry(), number, None, None, first.start - 0.5, first.start - 0.5,
                     first.clock, first.clock, number)  # fmt: skip
        observations.append((Observation(history=StepHistory(steps=[retry, *mine]), stored_values=stored,
                                         retry_replaces_failed_try=rule.replaces_failed_try),
                             [o.index for o in ops if o.try_number == number]))  # fmt: skip
    return observations


def _retry_notes(history: History, end_state: dict[str, Any], rule: RetryRule) -> list[str]:
    failed = [ti for ti in end_state.get("task_instances", []) if ti["task_id"] == "pushers" and ti["state"] == "failed"]
    refused = {(o.fields.get("run_id"), o.fields.get("map_index")) for o in history.of("push")
               if o.try_number > 1 and o.error_type == "XComOverwriteError" and not o.fields.get("again")}  # fmt: skip
    stuck = [ti for ti in failed if (ti["run_id"], ti["map_index"]) in refused]
    if not stuck:
        return []
    return [f"retry rule ({rule.name}): {len(stuck)} pusher task instance(s) failed for good because every retry's "
            f"push was refused after an earlier try had committed (e.g. {stuck[0]['run_id']} "
            f"map_index {stuck[0]['map_index']}, {stuck[0]['try_number']} tries)"]  # fmt: skip


# ------------------------------------------------------------------ reads
def _read_then_replaced(history: History, rows: dict[str, dict[str, Any]]) -> list[tuple[str, list[int]]]:
    problems = []
    for pull in history.of("pull"):
        if pull.outcome != "ok" or pull.fields.get("digest") is None:
            continue
        row = rows.get(_pulled(pull))
        if row is not None and "digest" in row and row["digest"] != pull.fields["digest"]:
            problems.append((f"{READ_THEN_REPLACED}: {pull.process} read {_pulled(pull)} (try {pull.fields.get('value_try')}'s"
                             f" value), the row now holds try {row.get('try')}'s", [pull.index]))  # fmt: skip
    return problems


def _unreadable(history: History, end_state: dict[str, Any], rows: dict[str, dict[str, Any]]) -> list[tuple[str, list[int]]]:
    """Every successful task's values readable through the backend."""
    succeeded = {(ti["run_id"], ti["task_id"], ti["map_index"]) for ti in end_state.get("task_instances", [])
                 if ti["state"] == "success"}  # fmt: skip
    problems = []
    for coordinate, row in rows.items():
        if "error" in row and (row["run_id"], row["task_id"], row["map_index"]) in succeeded:
            ops = [o.index for o in history.of("push") if o.coordinate() == coordinate]
            problems.append((f"{coordinate}: the successful task's value cannot be read back: {row['error']}", ops))
    return problems


# ------------------------------------------------------------------ scope
def _scope_attempts(history: History) -> tuple[list[ScopeAttempt], dict[str, list[int]]]:
    attempts, ops = [], {"push": [], "pull": []}
    for op in history.of("scope"):
        kind = op.fields["kind"]
        attempts.append(ScopeAttempt(kind, op.fields["task_id"], op.fields["source"], op.fields["key"], False,
                                     None if op.outcome == "ok" else f"{op.error_type}: {op.error}"))  # fmt: skip
        ops[kind].append(op.index)
    for op in history.of("push") + history.of("pull"):  # allowed by the policy: must not be refused for scope
        kind = op.op
        refused = op.outcome == "error" and "Scope" in (op.error_type or "")
        source = op.fields["task_id"] if kind == "push" else op.fields.get("source", "?")
        attempts.append(ScopeAttempt(kind, op.fields["task_id"], source, op.fields.get("key", "?"), True,
                                     f"{op.error_type}: {op.error}" if refused else None))  # fmt: skip
        if refused:
            ops[kind].append(op.index)
    return attempts, ops


# ------------------------------------------------------------------ claims
def _claim_observations(history: History, clock: _Clock, unknown_wins: bool = False) -> list[tuple[Observation, list[int]]]:
    by_claim: dict[str, list[Operation]] = defaultdict(list)
    for op in history.of("claim") + history.of("release"):
        by_claim[op.fields["claim_id"]].append(op)
    observations = []
    for claim_id, ops in by_claim.items():
        steps = []
        for op in sorted(ops, key=lambda o: o.start):
            holder = op.fields["holder"]
            if op.op == "claim" and unknown_wins and op.outcome != "ok":  # indeterminate: counted as possibly won
                step = _step(op, clock, Claim(claim_id, op.fields.get("lease")), holder, True)
                steps.append(dataclasses.replace(step, error=None, error_type=None))
            elif op.op == "claim":
                steps.append(_step(op, clock, Claim(claim_id, op.fields.get("lease")), holder, op.fields.get("won")))
            else:
                steps.append(_step(op, clock, Release(claim_id), holder, op.fields.get("released")))
        observations.append((Observation(history=StepHistory(steps=steps)), [o.index for o in ops]))
    return observations


# ------------------------------------------------------------------ gc
def _gc_observations(history: History, clock: _Clock, end_state: dict[str, Any],
                     pushes: dict[str, list[Operation]], values: _Values) -> list[tuple[Observation, list[int]]]:  # fmt: skip
    sweeps = [o for o in history.of("gc") if o.outcome == "ok"]
    if not sweeps:
        return []
    unreadable = {_row_coordinate(r): r["error"] for r in end_state["rows"] if "error" in r}
    observations = []
    for coordinate, ops in pushes.items():
        steps = [_step(s, clock, Sweep(), s.process) for s in sweeps]
        steps += [_step(o, clock, Push(coordinate, values.pushed(o)), f"{o.process} try {o.try_number}") for o in ops]
        mine = {coordinate: unreadable[coordinate]} if coordinate in unreadable else {}
        observations.append((Observation(history=StepHistory(steps=steps), unreadable=mine),
                             [o.index for o in ops + sweeps]))  # fmt: skip
    return observations


def broken(judged: Judged, names: list[str] | None = None) -> list[str]:
    return [e.name for e in judged.verdicts.ordered() if e.verdict == BROKEN and (names is None or e.name in names)]
