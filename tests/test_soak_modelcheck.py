"""The model check's bookkeeping: which mutant a soak caught, and how long it took, from a hand-written history."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from xcomsim.mutants.catalogue import CATALOGUE
from xcomsim.soak import SoakError, checks, history, modelcheck, probe, run, tasks
from xcomsim.soak.run import Options

PLAN = {"sizes": {"small": 200, "large": 3000, "attempt": 2048}}
CLAIMS = checks.Claims(push_once=True, scoping=True, claims=True, offload_threshold=None, sweeper=False)
RUN = "soak_00002"


def _push(pid: int, t: float, again: bool = False) -> list[dict]:
    value = tasks.value_for(RUN, 0, "small", 1, PLAN["sizes"], again=again)
    base = {"op": "push", "pid": pid, "worker": "worker1", "dag_id": "d", "run_id": RUN, "task_id": "pushers",
            "map_index": 0, "try_number": 1, "key": "small", "digest": probe.digest(value), "mono": 0,
            **({"again": True} if again else {})}  # fmt: skip
    return [{**base, "phase": "begin", "t": t}, {**base, "phase": "ok", "t": t + 0.5, "began": t}]


def _result(replaced: bool) -> run.Result:
    """Try 1 pushes ``small``, then (``replaced``) pushes it again in the same try and the second push lands."""
    events = _push(1, 1030.0) + (_push(1, 1050.0, again=True) if replaced else [])
    found = history.build(events)
    value = tasks.value_for(RUN, 0, "small", 1, PLAN["sizes"], again=replaced)
    rows = [{"dag_id": "d", "run_id": RUN, "task_id": "pushers", "map_index": 0, "key": "small", "value": value,
             "digest": probe.digest(value), "try": 0}]  # fmt: skip
    end_state = {"rows": rows, "objects": {}, "task_instances": [], "backend": "b"}
    judged = checks.judge(found, end_state, PLAN, CLAIMS)
    runs = {f"soak_0000{i}": {"state": "success", "triggered": 1000.0 + 20 * i, "ended": 1100.0} for i in range(1, 5)}
    return run.Result(judged, found, end_state, {"workload_began": 1000.0}, runs, [])


def test_a_mutant_is_caught_at_the_end_of_the_first_operation_that_breaks_its_guarantee():
    mutant = "xcomsim.mutants.xcom.OverwriteAllowedXCom"
    found = modelcheck.detect(mutant, _result(replaced=True))
    assert found.caught and found.invariant == "push-once" and "round-trip-exact" in found.kept
    assert found.seconds == 30.5  # try 1's push ended at 1030.5, the workload began at 1000
    assert found.runs == 1 and found.runs_total == 4  # soak_00001 was triggered at 1020, soak_00002 at 1040
    row = modelcheck.table([found]).splitlines()[-1]
    assert row.startswith("| `xcom.OverwriteAllowedXCom` | yes: `push-once` | yes | 30 s | 1 of 4 | push-once")


def test_a_mutant_whose_guarantee_held_is_not_caught_and_the_reference_is_judged_on_everything():
    mutant = "xcomsim.mutants.xcom.OverwriteAllowedXCom"
    missed = modelcheck.detect(mutant, _result(replaced=False))
    assert not missed.caught and missed.seconds is None
    assert "| no | - | - |" in modelcheck.table([missed])
    reference = modelcheck.detect(modelcheck.REFERENCE, _result(replaced=True))
    assert reference.invariant is None and "| (reference) | BROKEN |" in modelcheck.table([reference])


def test_the_soakable_mutants_and_the_rest_cover_the_catalogue_exactly():
    assert set(modelcheck.SOAKABLE) | set(modelcheck.NOT_SOAKABLE) == set(CATALOGUE)
    assert not set(modelcheck.SOAKABLE) & set(modelcheck.NOT_SOAKABLE)


def test_a_backend_outside_the_catalogue_is_refused_before_anything_starts():
    with pytest.raises(SoakError, match="not in the mutant catalogue: pkg.Mine"):
        modelcheck.model_check(["pkg.Mine"], Options(), print)


def test_claimers_started_apart_claim_at_one_instant():
    from xcomsim.soak.tasks import until_next

    starts = [1000.3, 1001.1, 1002.9, 1003.95]
    assert {round(t + until_next(4.0, t), 6) for t in starts} == {1004.0}
    assert until_next(0, 1000.3) == 0.0


def test_the_docs_list_every_mutant_the_soak_cannot_exercise_with_what_it_would_need():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "soak.md").read_text()
    for path, need in modelcheck.NOT_SOAKABLE.items():
        assert f"| `{path.removeprefix('xcomsim.mutants.')}` | {need} |" in page, path


def _failed_push(pid: int, t: float, key: str, error_type: str) -> list[dict]:
    base = {"op": "push", "pid": pid, "worker": "worker1", "dag_id": "d", "run_id": RUN, "task_id": "pushers",
            "map_index": 0, "try_number": 1, "key": key, "mono": 0}  # fmt: skip
    return [{**base, "phase": "begin", "t": t},
            {**base, "phase": "error", "t": t + 0.1, "began": t, "error_type": error_type, "error": "no store"}]


def test_a_mutant_whose_every_push_of_a_key_failed_was_not_exercised_rather_than_missed():
    """MapIndexlessXCom in the first soak of it: plain boto3 found no S3 in the deployment, every offloaded push
    failed, the collector still ran, and the table read "not caught" for a mutant the soak never exercised."""
    result = _result(replaced=False)
    result.history = history.build(_push(1, 1030.0) + _failed_push(2, 1031.0, "large", "NoCredentialsError")
                                   + _failed_push(3, 1032.0, "large", "NoCredentialsError"))  # fmt: skip
    missed = modelcheck.detect("xcomsim.mutants.families.MapIndexlessXCom", result)
    assert not missed.caught
    assert missed.unexercised == "every push of 'large' failed (2; NoCredentialsError: no store)"
    assert "| not exercised: every push of 'large' failed" in modelcheck.table([missed])
    refused = _result(replaced=False)  # refusals are the discipline at work: that key was exercised
    refused.history = history.build(_push(1, 1030.0) + _failed_push(2, 1031.0, "large", "XComOverwriteError"))
    assert modelcheck.detect("xcomsim.mutants.families.MapIndexlessXCom", refused).unexercised == ""
