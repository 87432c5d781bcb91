"""Each invariant on hand-built observations: it fails on a bad one and holds on a good one."""

from __future__ import annotations

import pytest

from xcomsim.checks import INVARIANTS, InvariantViolation, Observation, ScopeAttempt, references, require, violations
from xcomsim.scheduler.workload import History, Step
from xcomsim.strategies import Claim, Pull, Push, Release, Retry, Sweep, Wait


def story(*steps, overlapping=()):
    """Steps in order, each its own slot on the sequence; ``overlapping`` pairs (i, j) share one."""
    made = []
    for i, (worker, op, *outcome) in enumerate(steps):
        result, error, clock = (outcome + [None, None, 0.0])[:3]
        made.append(Step(i, worker, op, result=result, error=error, error_type="E" if error else None,
                         start=2 * i + 1, end=2 * i + 2, clock=clock or 0.0, finished_at=clock or 0.0))  # fmt: skip
    for i, j in overlapping:  # j started before i ended
        made[j] = Step(j, made[j].worker, made[j].op, made[j].result, made[j].error, made[j].error_type,
                       start=made[i].start, end=made[j].end, clock=made[j].clock, finished_at=made[j].finished_at)  # fmt: skip
    return History(steps=made)


def test_every_issue_invariant_is_registered():
    assert set(INVARIANTS) == {
        "exactly-one-claim-winner", "no-lost-claim", "push-once", "push-scope", "pull-scope",
        "offload-threshold", "round-trip-exact", "purge-leaves-no-orphan", "no-dangling-reference",
        "retry-can-push", "purge-deletes-only-its-own", "gc-safe-with-inflight-pushes", "fenced-tries",
        "refusal-leaves-nothing",
    }  # fmt: skip


def test_exactly_one_claim_winner():
    double = story(("w0", Claim("c"), True), ("w1", Claim("c"), True), ("w0", Release("c"), True))
    assert violations("exactly-one-claim-winner", Observation(double)) == [
        "w1 won claim 'c' (step #1) while w0 held it (won at step #0, not released, lease not expired)"
    ]
    released = story(("w0", Claim("c"), True), ("w0", Release("c"), True), ("w1", Claim("c"), True))
    expired = story(("w0", Claim("c", 5.0), True, None, 0.0), ("w1", Claim("c"), True, None, 10.0))
    assert violations("exactly-one-claim-winner", Observation(released)) == []
    assert violations("exactly-one-claim-winner", Observation(expired)) == []


def test_no_lost_claim():
    lost_after_release = story(("w0", Claim("c"), True), ("w0", Release("c"), True), ("w1", Claim("c"), False))
    lost_after_expiry = story(("w0", Claim("c", 5.0), True, None, 0.0), ("w1", Wait(10), 10.0, None, 0.0),
                              ("w1", Claim("c"), False, None, 10.0))  # fmt: skip
    held = story(("w0", Claim("c", 30.0), True, None, 0.0), ("w1", Claim("c"), False, None, 10.0))
    racing = story(("w1", Claim("c"), False), ("w0", Claim("c"), True), overlapping=[(0, 1)])
    assert "was refused, but no one held it" in violations("no-lost-claim", Observation(lost_after_release))[0]
    assert violations("no-lost-claim", Observation(lost_after_expiry))
    assert violations("no-lost-claim", Observation(held)) == []
    assert violations("no-lost-claim", Observation(racing)) == []  # w0's win overlapped w1's refusal


def test_push_once():
    overwritten = story(("w0", Push("k", 1)), ("w1", Push("k", 2)))
    problems = violations("push-once", Observation(overwritten, {"k": 2}))
    assert len(problems) == 2 and "was replaced by 2" in problems[1]
    kept = story(("w0", Push("k", 1)), ("w1", Push("k", 2), None, "already pushed"))
    assert violations("push-once", Observation(kept, {"k": 1})) == []


def test_round_trip_exact():
    lossy = story(("w0", Push("k", (1, 2))), ("w0", Pull("k"), [1, 2]))
    assert violations("round-trip-exact", Observation(lossy)) == ["w0 pulled 'k' as [1, 2]; pushed: [(1, 2)]"]
    exact = story(("w0", Push("k", (1, 2))), ("w0", Pull("k"), (1, 2)))
    assert violations("round-trip-exact", Observation(exact, {"k": (1, 2)})) == []
    assert violations("round-trip-exact", Observation(exact, {"k": [1, 2]}))


def test_scope_checks_want_refusals_that_name_everything():
    attempts = [
        ScopeAttempt("push", "a", "a", "x", allowed=True, error="XComScopeError: a may not push 'x'"),
        ScopeAttempt("push", "a", "a", "y", allowed=False),
        ScopeAttempt("pull", "b", "a", "z", allowed=False, error="not allowed"),
        ScopeAttempt("pull", "b", "a", "x", allowed=False, error="task b may not pull x from a"),
    ]
    obs = Observation(scope_attempts=attempts)
    push = violations("push-scope", obs)
    assert len(push) == 2 and push[0].startswith("refused although") and push[1].startswith("allowed although")
    (pull,) = violations("pull-scope", obs)
    assert "does not name" in pull and "'z'" in pull


def _rows(**values):
    return [{"task_id": "t", "key": k, "value": v} for k, v in values.items()]


def test_offload_threshold():
    objects = {"s3://xcomsim/xcom/v1": 2000}
    good = Observation(rows=_rows(big="s3://xcomsim/xcom/v1", small="x" * 10), objects=objects, threshold=1000,
                       pushed_sizes={"big": 2000, "small": 12})  # fmt: skip
    assert violations("offload-threshold", good) == []
    at_threshold_inline = Observation(rows=_rows(edge="x" * 998), objects={}, threshold=1000,
                                      pushed_sizes={"edge": 1000})  # fmt: skip
    assert "(>= 1000)" in violations("offload-threshold", at_threshold_inline)[0]
    with pytest.raises(ValueError, match="needs Observation.rows, objects, threshold"):
        violations("offload-threshold", Observation())


def test_orphans_and_dangling_references():
    rows = _rows(a="xcomsim+s3://aws_default@xcomsim/xcom/values/a1?sha256=00", b="s3://xcomsim/mutant/b1")
    objects = {"s3://xcomsim/xcom/values/a1": 5000, "s3://xcomsim/xcom/values/old": 5000, "redis:guard": 1}
    obs = Observation(rows=rows, objects=objects, threshold=1000)
    assert violations("purge-leaves-no-orphan", obs) == [
        "1 value-sized object(s) no row references: ['s3://xcomsim/xcom/values/old']"
    ]
    assert violations("no-dangling-reference", obs) == ["row t/b refers to s3://xcomsim/mutant/b1, which does not exist"]
    assert references("xcomsim+redis://redis_default/xcom/values/z?size=1", "xcomsim") == {"redis:xcom/values/z"}
    with pytest.raises(InvariantViolation, match=r"\[no-dangling-reference\]") as raised:
        require(["purge-leaves-no-orphan", "no-dangling-reference"],
                Observation(rows=rows, objects={"s3://xcomsim/xcom/values/a1": 5000}, threshold=1000))  # fmt: skip
    assert raised.value.invariant == "no-dangling-reference"


def test_retry_can_push():
    blocked = story(("w0", Push("k", 1), None, "crashed"), ("w1", Retry(), 2), ("w1", Push("k", 2), None, "already pushed"))
    problems = violations("retry-can-push", Observation(blocked, {}))
    assert len(problems) == 1 and "in try 2 was refused although no value of 'k' is stored" in problems[0]
    assert violations("retry-can-push", Observation(blocked, {"k": 1})) == []  # a value is stored: push-once
    same_try = story(("w0", Push("k", 1), None, "crashed"), ("w1", Push("k", 2), None, "already pushed"))
    assert violations("retry-can-push", Observation(same_try, {})) == []  # not a later try
    hit_by_a_fault = story(("w1", Retry(), 2), ("w1", Push("k", 2), None, "SlowDown (injected by xcomsim)"))
    assert violations("retry-can-push", Observation(hit_by_a_fault, {})) == []
    pushed = story(("w0", Push("k", 1), None, "crashed"), ("w1", Retry(), 2), ("w1", Push("k", 2)))
    assert violations("retry-can-push", Observation(pushed, {"k": 2})) == []


def test_purge_deletes_only_its_own():
    foreign = frozenset({"s3://b/data-lake/t.parquet", "redis:app:session"})
    gone = Observation(objects={"redis:app:session": 3, "s3://b/xcom/values/1": 10}, foreign=foreign)
    assert violations("purge-deletes-only-its-own", gone) == [
        "1 object(s) that were not the deleted XCom's own were deleted: ['s3://b/data-lake/t.parquet']"
    ]
    kept = Observation(objects={"redis:app:session": 3, "s3://b/data-lake/t.parquet": 5}, foreign=foreign)
    assert violations("purge-deletes-only-its-own", kept) == []
    with pytest.raises(ValueError, match="needs Observation.foreign"):
        violations("purge-deletes-only-its-own", Observation(objects={}))


def test_gc_safe_with_inflight_pushes():
    raced = story(("w1", Push("k", 1)), ("w0", Sweep(), ["values/1"]), overlapping=[(0, 1)])
    problems = violations("gc-safe-with-inflight-pushes", Observation(raced, unreadable={"k": "object missing"}))
    assert problems == ["w1's push of 'k' (step #0) landed, but its value is gone after a sweep that ran during it "
                        "(w0, step #1): object missing"]  # fmt: skip
    assert violations("gc-safe-with-inflight-pushes", Observation(raced, unreadable={})) == []
    no_sweep = story(("w1", Push("k", 1)))
    assert violations("gc-safe-with-inflight-pushes", Observation(no_sweep, unreadable={"k": "gone"})) == []
    failed_push = story(("w1", Push("k", 1), None, "refused"), ("w0", Sweep(), []))
    assert violations("gc-safe-with-inflight-pushes", Observation(failed_push, unreadable={"k": "gone"})) == []
