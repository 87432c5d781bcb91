"""The soak's judge, on histories written by hand: each guarantee can be found broken, and names the operations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xcomsim.soak import checks, history, probe, tasks

PLAN = {"sizes": {"small": 200, "large": 3000, "attempt": 2048}}
CLAIMS = checks.Claims(push_once=True, scoping=True, claims=True, offload_threshold=1024, sweeper=False)
FENCING = checks.Claims(push_once=True, scoping=True, claims=True, offload_threshold=1024, sweeper=False,
                        retry_replaces_failed_try=True)  # ExclusiveXCom's contract
RUN = "soak_00001"


def _push(pid: int, try_number: int, key: str, t: float, ok: bool = True, error: str = "XComOverwriteError",
          worker: str = "worker1", index: int = 0, clear: int = 0) -> list[dict]:  # fmt: skip
    value = tasks.value_for(RUN, index, key, try_number, PLAN["sizes"])
    base = {"op": "push", "pid": pid, "worker": worker, "dag_id": "d", "run_id": RUN, "task_id": "pushers",
            "map_index": index, "try_number": try_number, "key": key, "digest": probe.digest(value), "mono": 0,
            "clear": clear, "run_after": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    end = {**base, "phase": "ok", "t": t + 0.1, "began": t} if ok else {
        **base, "phase": "error", "t": t + 0.1, "began": t, "error_type": error, "error": "already pushed"}
    return [{**base, "phase": "begin", "t": t}, end]


def _row(key: str, try_number: int, index: int = 0) -> dict:
    value = tasks.value_for(RUN, index, key, try_number, PLAN["sizes"])
    return {"dag_id": "d", "run_id": RUN, "task_id": "pushers", "map_index": index, "key": key, "value": value,
            "digest": probe.digest(value), "try": value["try"]}  # fmt: skip


def _claim(pid: int, holder: str, t: float, won: bool, lease: float = 6.0) -> list[dict]:
    base = {"op": "claim", "pid": pid, "worker": "worker1", "claim_id": f"{RUN}:item0", "holder": holder,
            "lease": lease, "try_number": 1, "mono": 0}  # fmt: skip
    return [{**base, "phase": "begin", "t": t}, {**base, "phase": "ok", "t": t + 0.05, "began": t, "won": won}]


def _judge(events: list[dict], rows: list[dict], claims: checks.Claims = CLAIMS, rule=None, nemesis=None):
    found = history.build(sorted(events, key=lambda e: e["t"]), nemesis)
    end_state = {"rows": rows, "objects": {}, "task_instances": [], "backend": "test.Backend"}
    return found, checks.judge(found, end_state, PLAN, claims, rule)


def _verdict(judged: checks.Judged, name: str) -> str:
    return judged.verdicts.guarantees[name].verdict


def test_a_clean_history_keeps_push_once_and_names_what_was_not_run():
    _, judged = _judge(_push(1, 1, "small", 10.0) + _push(2, 2, "small", 20.0, ok=False), [_row("small", 1)])
    assert _verdict(judged, "push-once") == "kept"
    assert _verdict(judged, "retry-rule") == "kept"
    assert _verdict(judged, "exactly-one-claim-winner") == "not run"
    assert "no claim was attempted" in judged.verdicts.guarantees["exactly-one-claim-winner"].reason


def test_the_retry_rule_is_the_one_the_backend_declares():
    assert checks.rule_for(FENCING) is checks.RETRY_RULE is checks.FENCING_RULE
    assert checks.rule_for(CLAIMS) is checks.STRICT_RULE
    _, judged = _judge(_push(1, 1, "small", 10.0) + _push(2, 2, "small", 20.0), [_row("small", 1)])
    assert _verdict(judged, "retry-rule") == "kept"  # the identical value: the strict rule may accept it


def test_a_retry_that_replaces_a_committed_value_breaks_the_strict_rule_and_names_both_tries():
    """A backend that does not declare the fencing rule keeps push-once across tries (OverwriteAllowedXCom)."""
    events = _push(1, 1, "attempt", 10.0) + _push(2, 2, "attempt", 20.0)
    found, judged = _judge(events, [_row("attempt", 2)])
    assert _verdict(judged, "push-once") == "kept"  # within each try
    assert _verdict(judged, "retry-rule") == "broken"
    detail = judged.verdicts.guarantees["retry-rule"].counterexample
    assert "worker1/pid 2 try 2" in detail and "worker1/pid 1 try 1" in detail
    assert "succeeded although push-once across tries" in detail
    assert judged.violating["retry-rule"] == [0, 1]


def test_under_the_fencing_rule_a_retry_replaces_and_refusing_it_is_the_break():
    """ExclusiveXCom's rule: a retry replaces the failed try's committed value; StrictAcrossTriesXCom refuses it."""
    names = ("push-once", "retry-rule", "fenced-tries", "retry-can-push")
    events = _push(1, 1, "attempt", 10.0) + _push(2, 2, "attempt", 20.0)
    _, judged = _judge(events, [_row("attempt", 2)], claims=FENCING)
    assert {n: _verdict(judged, n) for n in names} == dict.fromkeys(names, "kept")
    refused = _push(1, 1, "attempt", 10.0) + _push(2, 2, "attempt", 20.0, ok=False)
    _, judged = _judge(refused, [_row("attempt", 1)], claims=FENCING)
    assert _verdict(judged, "retry-rule") == "broken"
    assert "refused although the fencing rule" in judged.verdicts.guarantees["retry-rule"].counterexample
    assert _verdict(judged, "retry-can-push") == "broken"  # the registry's check, told the backend's rule
    _, judged = _judge(refused, [_row("attempt", 1)])  # the same refusal is what the strict rule asks
    assert _verdict(judged, "retry-rule") == "kept" and _verdict(judged, "retry-can-push") == "kept"


def test_a_zombie_tries_late_write_that_lands_breaks_fenced_tries():
    """Try 1 paused past its heartbeat; try 2 pushed; try 1 resumed and its push succeeded, its value stored."""
    events = _push(1, 1, "attempt", 30.0) + _push(2, 2, "attempt", 20.0)
    _, judged = _judge(events, [_row("attempt", 1)], claims=FENCING)
    assert _verdict(judged, "fenced-tries") == "broken"
    assert _verdict(judged, "retry-rule") == "broken"
    assert "an earlier try must be fenced off" in judged.verdicts.guarantees["retry-rule"].counterexample
    fenced = _push(1, 1, "attempt", 30.0, ok=False, error="XComFencedError") + _push(2, 2, "attempt", 20.0)
    _, judged = _judge(fenced, [_row("attempt", 2)], claims=FENCING)
    assert _verdict(judged, "fenced-tries") == "kept" and _verdict(judged, "retry-rule") == "kept"
    assert _verdict(judged, "retry-can-push") == "kept"  # the zombie's refusal is not its retry's


def test_after_a_clear_a_different_value_is_refused_and_an_identical_one_accepted():
    different = _push(1, 1, "attempt", 10.0) + _push(2, 2, "attempt", 20.0, clear=1)
    _, judged = _judge(different, [_row("attempt", 2)], claims=FENCING)
    assert _verdict(judged, "retry-rule") == "broken"
    replaces = checks.RetryRule("with retry_replaces", replaces_failed_try=True, retry_replaces=True)
    _, judged = _judge(different, [_row("attempt", 2)], claims=FENCING, rule=replaces)
    assert _verdict(judged, "retry-rule") == "kept"
    identical = _push(1, 1, "small", 10.0) + _push(2, 2, "small", 20.0, ok=False, clear=1)
    _, judged = _judge(identical, [_row("small", 1)], claims=FENCING)
    assert _verdict(judged, "retry-rule") == "broken"  # the identical value must be accepted


def test_a_retrys_push_that_fails_while_a_store_is_down_is_the_faults():
    events = _push(1, 1, "large", 10.0) + _push(2, 2, "large", 20.0, ok=False, error="XComStoreError")
    restart = [{"t": 19.0, "fault": "restart", "target": "S3 endpoint", "ended": 25.0}]
    _, judged = _judge(events, [_row("large", 1)], claims=FENCING, nemesis=restart)
    assert _verdict(judged, "retry-rule") == "kept" and _verdict(judged, "retry-can-push") == "kept"
    _, judged = _judge(events, [_row("large", 1)], claims=FENCING)
    assert _verdict(judged, "retry-rule") == "broken" and _verdict(judged, "retry-can-push") == "broken"


def test_a_value_read_downstream_and_later_replaced_is_a_push_once_break():
    pull = {"op": "pull", "pid": 9, "worker": "worker2", "dag_id": "d", "run_id": RUN, "task_id": "collect",
            "source": "pushers", "source_map": 0, "key": "attempt", "try_number": 1, "mono": 0}  # fmt: skip
    first = tasks.value_for(RUN, 0, "attempt", 1, PLAN["sizes"])
    events = _push(1, 1, "attempt", 10.0) + [{**pull, "phase": "begin", "t": 12.0},
                                            {**pull, "phase": "ok", "t": 12.1, "began": 12.0,
                                             "digest": probe.digest(first), "value_try": 1}]  # fmt: skip
    _, judged = _judge(events, [_row("attempt", 2)])
    assert _verdict(judged, "push-once") == "broken"
    assert checks.READ_THEN_REPLACED in judged.verdicts.guarantees["push-once"].counterexample


def test_two_holders_of_one_claim_while_both_leases_run_break_exactly_one_winner():
    events = _claim(1, "0.1.aaaa", 10.0, True) + _claim(2, "1.1.bbbb", 11.0, True)
    _, judged = _judge(events, [])
    assert _verdict(judged, "exactly-one-claim-winner") == "broken"
    events = _claim(1, "0.1.aaaa", 10.0, True, lease=0.5) + _claim(2, "1.1.bbbb", 11.0, True)
    _, judged = _judge(events, [])
    assert _verdict(judged, "exactly-one-claim-winner") == "kept"


def test_a_refused_claim_nobody_held_breaks_no_lost_claim():
    events = _claim(1, "0.1.aaaa", 10.0, True, lease=0.5) + _claim(2, "1.1.bbbb", 20.0, False)
    _, judged = _judge(events, [])
    assert _verdict(judged, "no-lost-claim") == "broken"


def test_scope_violations_must_be_refused_naming_caller_source_and_key():
    base = {"op": "scope", "pid": 3, "worker": "worker1", "dag_id": "d", "run_id": RUN, "task_id": "violate",
            "kind": "push", "source": "violate", "key": "forbidden", "try_number": 1, "mono": 0}  # fmt: skip
    allowed = [{**base, "phase": "begin", "t": 5.0}, {**base, "phase": "ok", "t": 5.1, "began": 5.0}]
    _, judged = _judge(allowed, [])
    assert _verdict(judged, "push-scope") == "broken"
    refused = [{**base, "phase": "begin", "t": 5.0}, {**base, "phase": "error", "t": 5.1, "began": 5.0,
               "error_type": "XComScopeError", "error": "task 'violate' may not push key 'forbidden'"}]  # fmt: skip
    _, judged = _judge(refused, [])
    assert _verdict(judged, "push-scope") == "kept"
    _, judged = _judge(refused, [], claims=checks.Claims(False, False, False, None, False))
    assert _verdict(judged, "push-scope") == "not claimed"


def test_a_process_killed_inside_a_push_is_a_crash_and_its_retry_must_push_when_nothing_is_stored():
    events = _push(1, 1, "large", 10.0)[:1] + _push(2, 2, "large", 20.0, ok=False)
    found, judged = _judge(events, [])
    assert [o.outcome for o in found.operations] == ["died", "error"]
    assert _verdict(judged, "retry-can-push") == "broken"
    assert "refused although no value of" in judged.verdicts.guarantees["retry-can-push"].counterexample


def test_a_skewed_workers_times_are_moved_onto_this_machines_clock(tmp_path: Path):
    (tmp_path / "worker2-7.jsonl").write_text("\n".join(json.dumps(e) for e in _push(7, 1, "small", 1000.0,
                                                                                       worker="worker2")) + "\n{broken")  # fmt: skip
    events = history.load_events(tmp_path, {"worker2": 600})
    assert [e["t"] for e in events] == [pytest.approx(400.0), pytest.approx(400.1)]
    assert events[1]["began"] == pytest.approx(400.0)


def test_a_claim_whose_reply_was_lost_may_hold_it_so_a_refusal_after_it_is_no_lost_claim():
    """pg_terminate_backend can drop a claimant's connection after its claim committed: the claim errors, the
    row says claimed, the next claimant is refused. The errored claim is a possible holder, never a certain one."""
    base = {"op": "claim", "pid": 1, "worker": "worker1", "claim_id": f"{RUN}:item0", "holder": "a", "lease": 6.0,
            "try_number": 1, "mono": 0}  # fmt: skip
    lost = [{**base, "phase": "begin", "t": 10.0},
            {**base, "phase": "error", "t": 10.1, "began": 10.0, "error_type": "OperationalError",
             "error": "terminating connection due to administrator command"}]  # fmt: skip
    _, judged = _judge(lost + _claim(2, "b", 11.0, won=False), [])
    assert _verdict(judged, "no-lost-claim") == "kept"
    _, judged = _judge(lost + _claim(2, "b", 11.0, won=True), [])
    assert _verdict(judged, "exactly-one-claim-winner") == "kept"
    _, judged = _judge(lost + _claim(2, "b", 17.0, won=False), [])  # after the lease: a lost claim
    assert _verdict(judged, "no-lost-claim") == "broken"


def test_a_second_push_in_one_try_that_succeeds_breaks_push_once_and_its_refusal_is_no_retrys():
    """The workload pushes ``small`` a second time in each try, with another value: push-once refuses it."""
    again = tasks.value_for(RUN, 0, "small", 2, PLAN["sizes"], again=True)
    second = [{**e, "digest": probe.digest(again), "again": True} for e in _push(2, 2, "small", 21.0)]
    events = _push(1, 1, "small", 10.0) + _push(2, 2, "small", 20.0) + second
    _, judged = _judge(events, [_row("small", 1) | {"value": again, "digest": probe.digest(again)}], claims=FENCING)
    assert _verdict(judged, "push-once") == "broken"
    assert "in the same try (2)" in judged.verdicts.guarantees["push-once"].counterexample
    refused = [{**e, "digest": probe.digest(again), "again": True} for e in _push(2, 2, "small", 21.0, ok=False)]
    _, judged = _judge(_push(1, 1, "small", 10.0) + _push(2, 2, "small", 20.0) + refused, [_row("small", 2)],
                       claims=FENCING)  # fmt: skip
    names = ("push-once", "retry-rule", "retry-can-push", "fenced-tries")
    assert {n: _verdict(judged, n) for n in names} == dict.fromkeys(names, "kept")
