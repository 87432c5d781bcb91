"""The verdict table and the replay hint as a user meets them: fixed order, printed under -x, pasteable."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTANT = "xcomsim.mutants.xcom.TupleToListXCom"


@pytest.fixture
def kit_pytester(clean_pytester, monkeypatch):
    """The subprocess imports this checkout's xcomsim, whichever one is installed."""
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{ROOT / 'tests'}")
    return clean_pytester


def test_the_replay_hint_runs_when_pasted(kit_pytester):
    kit_pytester.makepyfile(test_mine="def test_mine(): pass")
    first = kit_pytester.runpytest_subprocess("--xcomsim", f"--xcomsim-backend={MUTANT}", "--xcomsim-profile=ci",
                                              "-k", "test_round_trip_is_exact")  # fmt: skip
    first.assert_outcomes(failed=1)
    output = first.stdout.str()
    lines = output.splitlines()
    hint = lines[next(i for i, line in enumerate(lines) if "xcomsim: replay" in line) + 1]
    # The interpreter that ran, not a bare `pytest` that may be another venv's or none in the user's shell.
    assert f"--xcomsim-backend={MUTANT}" in hint
    assert hint.startswith(f"cd {kit_pytester.path} && {shlex.quote(sys.executable)} -m pytest "), hint
    command = hint.split("   (")[0]
    pasted = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert re.search(r"\b1 failed\b", pasted.stdout), pasted.stdout[-3000:] + pasted.stderr[-2000:]
    assert "passed" not in pasted.stdout.splitlines()[-1]  # the user's own test is not what ran
    broken = re.search(r"\[round-trip-exact\] pushed .*", output)
    assert broken and broken.group(0) in pasted.stdout  # the same counterexample


def test_the_table_is_printed_in_a_fixed_order_even_when_x_stops_the_run(kit_pytester):
    kit_pytester.makepyfile(test_mine="def test_mine(): assert False")
    result = kit_pytester.runpytest_subprocess("--xcomsim", f"--xcomsim-backend={MUTANT}", "-x", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"xcomsim conformance verdict for {MUTANT}:",
        "  push-once *not run", "  round-trip-exact *not run", "  push-scope *not run", "  pull-scope *not run",
        "  exactly-one-claim-winner *not run", "  no-lost-claim *not run", "  offload-threshold *not run",
        "  purge-leaves-no-orphan *not run", "  no-dangling-reference *not run",
    ])  # fmt: skip


def test_verdicts_keep_every_story_line_and_the_model_claims_only_what_is_judged():
    from xcomsim.conformance.verdict import Verdicts

    story = "\n".join(["E   xcomsim.checks.registry.InvariantViolation: [push-once] a second push succeeded",
                       "E   state.push(key='k0', value=1)", "E   state.push(key='k0', value=1)"])  # fmt: skip
    verdicts = Verdicts("b")
    verdicts.record_failure(("push-once", "round-trip-exact"), story)
    verdicts.record("no-lost-claim", "skipped", "not claimed: no claim store")
    verdicts.record("exactly-one-claim-winner", "passed")
    table = verdicts.table()
    assert table.count("state.push(key='k0', value=1)") == 2  # the second push is the story
    assert table.index("push-once") < table.index("exactly-one-claim-winner") < table.index("no-lost-claim")
    assert "round-trip-exact" not in table  # the failure named its invariant


def test_a_guarantee_the_kit_could_not_test_is_not_run_with_its_reason():
    """Not "not claimed": the backend may keep it; the kit could not learn what it needed to test it."""
    from xcomsim.conformance.verdict import CANNOT_TEST, Verdicts

    verdicts = Verdicts("b")
    verdicts.record("purge-deletes-only-its-own", "skipped", f"{CANNOT_TEST}the row names no object")
    verdicts.record("gc-safe-with-inflight-pushes", "skipped", "not claimed: no sweeper")
    lines = [line.split() for line in verdicts.table().splitlines()]
    at = lines.index(["purge-deletes-only-its-own", "not", "run"])
    assert " ".join(lines[at + 1]) == f"{CANNOT_TEST}the row names no object"
    assert ["gc-safe-with-inflight-pushes", "not", "claimed"] in lines


def test_a_story_line_is_kept_but_not_the_same_words_in_the_tracebacks_source():
    from xcomsim.conformance.verdict import Verdicts

    detail = "\n".join([
        '        f"after XCom.delete of rows forged to name other objects: {forged}")',
        "E   xcomsim.checks.registry.InvariantViolation: [purge-deletes-only-its-own] 1 object(s) ...",
        "E   after XCom.delete of rows forged to name other objects: [\"'forged_0' -> s3://b/k\"]",
    ])  # fmt: skip
    verdicts = Verdicts("b")
    verdicts.record_failure(("purge-deletes-only-its-own",), detail)
    shown = verdicts.guarantees["purge-deletes-only-its-own"].counterexample.splitlines()
    assert shown == ["InvariantViolation: [purge-deletes-only-its-own] 1 object(s) ...",
                     "after XCom.delete of rows forged to name other objects: [\"'forged_0' -> s3://b/k\"]"]


def test_an_import_the_harness_cannot_make_is_a_harness_problem_never_a_break(kit_pytester):
    """Airflow 3.1 has no ``airflow.sdk.serde``: a kit test reaching for it said "offload-threshold broken"."""
    kit_pytester.makepyfile(test_mine="""
        import pytest
        from xcomsim.compat import names

        @pytest.mark.xcomsim_guarantee("offload-threshold")
        def test_mine(monkeypatch):
            monkeypatch.setitem(names.HOMES, "gone", (("airflow.no_such_module", "serialize", "9.9"),))
            names.home("gone")
    """)
    result = kit_pytester.runpytest_subprocess("--xcomsim", "-k", "test_mine", "-p", "no:randomly")
    result.assert_outcomes(failed=1)  # the test still fails: the harness could not run it
    result.stdout.fnmatch_lines(["  offload-threshold *not run*",
                                 "  harness problem: ImportError: the installed Airflow has no gone *"
                                 "(at xcomsim/compat/names.py) in a test of offload-threshold: no verdict drawn from it"])
    assert "broken" not in result.stdout.str()


def test_an_import_failing_in_a_backend_is_the_backends_own(tmp_path):
    """Only the harness's own imports are excused: the user's backend and ours (and the mutants) answer for theirs."""
    from xcomsim.conformance import verdict

    def raised_in(path: Path) -> BaseException:
        try:
            exec(compile("raise ImportError('no module named pyarrow')", str(path), "exec"))
        except ImportError as error:
            return error
        raise AssertionError("compiled code did not raise")

    package = Path(verdict.__file__).resolve().parents[1]
    assert verdict.harness_problem(raised_in(package / "strategies" / "_internal" / "families.py"))
    assert verdict.harness_problem(raised_in(tmp_path / "my_backend.py")) is None
    assert verdict.harness_problem(raised_in(package / "backend" / "codec.py")) is None
    assert verdict.harness_problem(raised_in(package / "mutants" / "families.py")) is None
    assert verdict.harness_problem(ValueError("not an import")) is None
