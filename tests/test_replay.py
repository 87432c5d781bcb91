"""--xcomsim-replay re-runs the failing examples kept in the database, and generates none."""

from __future__ import annotations

import sys

PROPERTY = '''
from pathlib import Path
from hypothesis import given, strategies as st

@given(st.integers(0, 10**6))
def test_small(x):
    with Path("calls.txt").open("a") as calls:
        calls.write(f"{x}\\n")
    assert x < 1000
'''


def _calls(pytester) -> list[int]:
    path = pytester.path / "calls.txt"
    values = [int(v) for v in path.read_text().split()] if path.exists() else []
    path.unlink(missing_ok=True)
    return values


def test_replay_reruns_only_the_kept_failure(clean_pytester):
    clean_pytester.makepyfile(test_property=PROPERTY)
    db = ["--xcomsim-hypothesis-db", str(clean_pytester.path / "examples")]

    found = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-profile=dev", "-p", "no:randomly", *db)
    found.assert_outcomes(failed=1)
    found.stdout.fnmatch_lines(["*x=1000*"])  # shrunk to the boundary
    found.stdout.fnmatch_lines(["*xcomsim: replay*", f"cd * && {sys.executable} -m pytest --xcomsim --xcomsim-replay --xcomsim-hypothesis-db=*examples* test_property.py::test_small *"])
    assert len(_calls(clean_pytester)) > 5

    replayed = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-replay", "-p", "no:randomly", *db)
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["*x=1000*"])
    assert 1000 in _calls(clean_pytester)

    empty = ["--xcomsim-hypothesis-db", str(clean_pytester.path / "empty")]
    nothing_kept = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-replay", "-p", "no:randomly", *empty)
    nothing_kept.assert_outcomes(skipped=1)  # nothing to replay, nothing generated: Hypothesis skips it
    assert _calls(clean_pytester) == []
