"""Wall time of the whole conformance kit on each corpus backend, one pytest session per backend.

    python tests/benchmarks/kit_time.py [--rounds 3] [--profile ci] [backend ...]

Each session is what a user runs: ``pytest --xcomsim --xcomsim-profile=ci`` on a module adopting the
contract for one backend, the model test included, in a fresh folder whose conftest creates the corpus's
buckets and Redis connection. Rounds alternate the backends' order. Per backend it prints each round's
wall time with the 1-minute load average read just before it, the median, and, for the median round,
where the time went (from ``--durations=0``): the session outside the tests (start-up, collection,
exit), the first test's setup (the simulated world's start), the other setups (discovery among them), the
round trips, the model test and the other tests.
Each table is also held to the corpus's expected verdicts (``tests/corpus/__init__.py``): every round says
which guarantees differ, and the summary how many rounds gave every expected verdict and the discovered line.
The machine is shared: read a time beside its load.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from corpus import EXPECTED, STORES_CONFTEST, reported  # noqa: E402


MODULE = '''
import pytest
from xcomsim.conformance import XComBackendContract

@pytest.mark.xcomsim(backend={backend!r})
class TestBackendContract(XComBackendContract):
    pass
'''

DURATION = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+\S+::(\w+)$", re.M)


def run_once(backend: str, profile: str) -> tuple[float, float, dict[str, float], str]:
    """One session on ``backend``: (wall seconds, 1-min load before it, seconds per part, verdict table)."""
    with tempfile.TemporaryDirectory(prefix="xcomsim-kit-time-") as folder:
        Path(folder, "conftest.py").write_text(STORES_CONFTEST)
        Path(folder, "test_kit.py").write_text(MODULE.format(backend=backend))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        load = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--xcomsim", f"--xcomsim-profile={profile}", "-p", "no:randomly",
             "-p", "no:cacheprovider", "--durations=0", "--durations-min=0", "-v", "test_kit.py"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
        wall = time.perf_counter() - started
    out = done.stdout
    if "xcomsim conformance verdict for" not in out:
        raise SystemExit(f"no verdict table for {backend}:\n{out[-3000:]}\n{done.stderr[-2000:]}")
    first = re.search(r"^test_kit\.py::\w+::(\w+) ", out, re.M)
    parts = {"first setup": 0.0, "other setups": 0.0, "round trips": 0.0, "model test": 0.0, "other calls": 0.0}
    for seconds, when, name in DURATION.findall(out):
        if when != "call":  # the first test's setup starts the simulated world; discovery runs in one setup
            part = "first setup" if first and name == first.group(1) and when == "setup" else "other setups"
        else:
            part = ("model test" if "agrees_with_the_model" in name else "round trips" if "round_trip" in name
                    else "other calls")  # fmt: skip
        parts[part] += float(seconds)
    parts = {"outside tests": wall - sum(parts.values()), **parts}
    table = out[out.index("xcomsim conformance verdict for"):].split("\n=")[0]
    return wall, load, parts, table


UNCLAIMED = ("push-scope", "pull-scope", "exactly-one-claim-winner", "no-lost-claim")  # no corpus backend claims them


def differences(backend: str, table: str) -> list[str]:
    """Where ``table`` differs from what the corpus expects of ``backend`` (nothing for a backend not in it)."""
    if backend not in EXPECTED:
        return []
    line, verdicts = EXPECTED[backend]
    wrong = [] if f"discovered: {line}" in table else [f"discovered: expected {line!r}..."]
    for guarantee, verdict in {**dict.fromkeys(UNCLAIMED, "not claimed"), **verdicts}.items():
        if reported(table, guarantee) != verdict:
            wrong.append(f"{guarantee}: expected {verdict}, reported {reported(table, guarantee)}")
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backends", nargs="*", default=list(EXPECTED), help="backend paths (default: the corpus)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="ci")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, dict[str, float], str]]] = {b: [] for b in args.backends}
    for round_ in range(args.rounds):
        order = args.backends if round_ % 2 == 0 else args.backends[::-1]
        for backend in order:
            runs[backend].append(run_once(backend, args.profile))
            wall, load, _, table = runs[backend][-1]
            wrong = differences(backend, table)
            print(f"round {round_ + 1} {backend}: {wall:.1f} s (load {load:.1f}); "
                  f"{'; '.join(wrong) if wrong else 'every verdict as expected'}", flush=True)  # fmt: skip
    print(f"\nkit wall time per backend, {args.profile} profile, {args.rounds} rounds, one session each "
          f"(load: 1-minute average before each round)")  # fmt: skip
    print(f"{'backend':45} {'median':>7}  rounds (load)                      where the median round went")
    for backend, found in runs.items():
        ordered = sorted(found, key=lambda r: r[0])
        wall, _, parts, _ = ordered[len(ordered) // 2]
        rounds = ", ".join(f"{w:.0f} ({ld:.1f})" for w, ld, _, _ in found)
        where = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
        print(f"{backend:45} {statistics.median(r[0] for r in found):6.1f}s  {rounds:34} {where}")
    print("\nverdicts against tests/corpus (rounds with every expected verdict and discovered line), discovered line")
    for backend, found in runs.items():
        kept = sum(not differences(backend, table) for _, _, _, table in found)
        counted = f"{kept}/{len(found)}" if backend in EXPECTED else "-"
        print(f"{backend:45} {counted:>5}  {found[-1][3].splitlines()[1].strip()}")


if __name__ == "__main__":
    main()
