"""A pytest session of N tests, each running one DAG once, under xcomsim and its peers, side by side.

The peers are whatever is importable here: plain ``dag.test()`` (always, it is Airflow's own),
twice: each session in a new Airflow home it migrates, as every tool here isolates its
sessions, and with one home kept across sessions and migrated once before the measured ones
(the cheapest plain set-up); and ``pytest-airflow-in-a-box`` (when installed). Nothing is
installed by this script. Each tool gets its own throwaway project (the same DAG file, N
identical tests) and runs as its own ``python -m pytest`` process with the other tools'
plugins switched off; rounds alternate the order of the tools so neither warm caches nor
machine load favour one. The table shows medians of the whole session's wall time, xcomsim's
ratio to each peer, and each tool's per-test time (setup, call and teardown, from the
session's JUnit XML) at the median and the 90th percentile, over every test of every round:
a tool with latency spikes shows a p90 far above its p50.

Run: ``python -m xcomsim.bench.peers [--rounds 5] [--tests 20] [--dag small|ten|both]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xcomsim.bench.dags import two_tasks
from xcomsim.bench.stats import percentile

SMALL = two_tasks("peers_small")

TEN = textwrap.dedent(
    """
    from datetime import datetime
    from airflow.sdk import DAG, task
    from airflow.providers.standard.operators.python import PythonOperator

    def _push(ti):
        ti.xcom_push(key="rows", value=[1, 2, 3])

    def _pull(ti):
        assert ti.xcom_pull(task_ids="classic_push", key="rows") == [1, 2, 3]

    with DAG("peers_ten", start_date=datetime(2024, 1, 1), schedule=None) as dag:
        @task
        def extract():
            return [1, 2, 3, 4, 5]

        @task
        def square(x):
            return x * x

        @task
        def reduce(values):
            return sum(values)

        @task.branch
        def route(total):
            return "big" if total > 10 else "small"

        @task
        def big():
            return "big"

        @task
        def small():
            return "small"

        push = PythonOperator(task_id="classic_push", python_callable=_push)
        pull = PythonOperator(task_id="classic_pull", python_callable=_pull)
        route(reduce(square.expand(x=extract()))) >> [big(), small()]
        push >> pull
    """
)

DAGS = {"small": ("peers_small", SMALL), "ten": ("peers_ten", TEN)}
IN_A_BOX = "pytest_airflow_in_a_box"


@dataclass(frozen=True)
class Tool:
    """One way to run the session: the files of its project and the pytest arguments.

    ``prepare``: run one unmeasured session first (a project that keeps state across sessions).
    """

    name: str
    files: Callable[[str, int], dict[str, str]]
    args: tuple[str, ...]
    prepare: bool = False


def _tests(n: int, body: str, fixtures: str) -> str:
    return "\n".join(f"def test_run_{i}({fixtures}):\n    {body}\n" for i in range(n))


def _xcomsim_files(dag_id: str, n: int) -> dict[str, str]:
    return {"test_session.py": _tests(n, f"assert run_dag({dag_id!r}).succeeded", "run_dag")}


_DAG_TEST_CONFTEST = textwrap.dedent(
    """
    import os, sys, tempfile
    from pathlib import Path

    _home = {home}
    _dags = str(Path(__file__).parent / "dags")
    os.environ.update({{
        "AIRFLOW_HOME": _home,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{{_home}}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": _dags,
    }})
    sys.path.insert(0, _dags)

    import pytest

    @pytest.fixture(scope="session", autouse=True)
    def _migrated():
        if {migrate}:
            from airflow.utils import db
            db.initdb()
    """
)


def _dag_test_files(dag_id: str, n: int) -> dict[str, str]:
    """Each session in a new Airflow home, migrated by the session (as the other tools isolate theirs)."""
    conftest = _DAG_TEST_CONFTEST.format(home='tempfile.mkdtemp(prefix="peers-dagtest-")', migrate="True")
    body = f"assert __import__({dag_id!r}).dag.test().state == 'success'"
    return {"conftest.py": conftest, "test_session.py": _tests(n, body, "")}


def _dag_test_kept_files(dag_id: str, n: int) -> dict[str, str]:
    """One Airflow home kept across sessions, migrated once (the unmeasured first session): the
    cheapest plain ``dag.test()`` set-up, with no migration in any measured session."""
    conftest = _DAG_TEST_CONFTEST.format(
        home='str(Path(__file__).parent / "airflow-home")', migrate='not os.path.exists(f"{_home}/airflow.db")'
    )
    body = f"assert __import__({dag_id!r}).dag.test().state == 'success'"
    return {"conftest.py": conftest, "test_session.py": _tests(n, body, "")}


def _in_a_box_files(dag_id: str, n: int) -> dict[str, str]:
    body = f"assert run_dag(dag_bag.dags[{dag_id!r}]).success"
    return {"test_session.py": _tests(n, body, "dag_bag, run_dag")}


_COMMON = ("-q", "-p", "no:randomly", "-p", "no:cacheprovider")
TOOLS = [
    Tool("xcomsim", _xcomsim_files, (*_COMMON, "-p", f"no:{IN_A_BOX}", "--xcomsim", "--xcomsim-dags=dags")),
    Tool("dag.test()", _dag_test_files, (*_COMMON, "-p", f"no:{IN_A_BOX}", "-p", "no:xcomsim")),
    Tool("dag.test(), DB kept", _dag_test_kept_files, (*_COMMON, "-p", f"no:{IN_A_BOX}", "-p", "no:xcomsim"),
         prepare=True),
    Tool("pytest-airflow-in-a-box", _in_a_box_files, (*_COMMON, "-p", "no:xcomsim", "--dag-folder=dags")),
]


def available() -> list[Tool]:
    """The tools that can run here: in-a-box only when importable."""
    return [t for t in TOOLS if t.name != "pytest-airflow-in-a-box" or importlib.util.find_spec(IN_A_BOX)]


def _project(root: Path, tool: Tool, dag: str, n: int) -> Path:
    dag_id, source = DAGS[dag]
    folder = root / f"{re.sub(r'[^A-Za-z0-9]+', '_', tool.name).strip('_')}-{dag}"
    (folder / "dags").mkdir(parents=True)
    (folder / "dags" / f"{dag_id}.py").write_text(source)
    (folder / "pytest.ini").write_text("[pytest]\n")
    for name, text in tool.files(dag_id, n).items():
        (folder / name).write_text(text)
    return folder


SESSION_LIMIT = 1800.0  # seconds one session may take before it is reported stuck


@dataclass(frozen=True)
class Session:
    """One pytest process: its wall seconds and each test's seconds (setup, call and teardown)."""

    seconds: float
    tests: tuple[float, ...]


def run_session(folder: Path, tool: Tool, n: int, limit: float = SESSION_LIMIT) -> Session:
    """One whole pytest process; raises if any test did not pass or it outlived ``limit``."""
    # Each tool runs on its own arguments only: options the caller's shell adds (PYTEST_ADDOPTS,
    # an xdist worker's variables) would be foreign to two of the three sessions.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS" and not k.startswith("PYTEST_XDIST_")}
    report = folder / "junit.xml"
    report.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", *tool.args, f"--junit-xml={report}"], cwd=folder,
                              capture_output=True, text=True, timeout=limit, env=env)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{tool.name} session in {folder} did not finish within {limit:g}s") from None
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or f"{n} passed" not in done.stdout:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise RuntimeError(f"{tool.name} session in {folder} did not pass all {n} tests:\n{tail}")
    return Session(elapsed, per_test_seconds(report))


def per_test_seconds(report: Path) -> tuple[float, ...]:
    """Each test case's time in a JUnit XML report, in the order the tests ran."""
    return tuple(float(case.get("time", "nan")) for case in ElementTree.parse(report).iter("testcase"))


Samples = dict[tuple[str, str], list[Session]]


def measure(dags: list[str], rounds: int, n: int, tools: list[Tool]) -> Samples:
    """Per (dag, tool) the sessions, rounds alternating the tools' order."""
    samples: Samples = {}
    with tempfile.TemporaryDirectory(prefix="xcomsim-peers-") as tmp:
        projects = {(d, t.name): _project(Path(tmp), t, d, n) for d in dags for t in tools}
        for dag in dags:
            for tool in (t for t in tools if t.prepare):
                run_session(projects[dag, tool.name], tool, n)
        for round_ in range(rounds):
            order = tools if round_ % 2 == 0 else tools[::-1]
            for dag in dags:
                for tool in order:
                    session = run_session(projects[dag, tool.name], tool, n)
                    samples.setdefault((dag, tool.name), []).append(session)
                    print(f"round {round_ + 1}/{rounds} {dag:<5} {tool.name:<24} {session.seconds:6.2f} s",
                          file=sys.stderr)  # fmt: skip
    return samples


def table(samples: Samples, n: int) -> str:
    """Medians, xcomsim's ratio to each peer (below 1.0: xcomsim is faster), per-test p50 and p90."""
    lines = [f"{'DAG':<6} {'tool':<24} {f'{n}-test session (median)':>26} {'xcomsim / tool':>15} "
             f"{'per test p50':>13} {'p90':>8} {'p90/p50':>8}"]  # fmt: skip
    for dag in dict.fromkeys(d for d, _ in samples):
        ours = statistics.median(s.seconds for s in samples[dag, "xcomsim"])
        for (d, name), sessions in samples.items():
            if d == dag:
                median = statistics.median(s.seconds for s in sessions)
                tests = sorted(t for s in sessions for t in s.tests)
                p50, p90 = percentile(tests, 50) * 1000, percentile(tests, 90) * 1000
                lines.append(f"{dag:<6} {name:<24} {median:>24.2f} s {ours / median:>15.2f} "
                             f"{p50:>10.0f} ms {p90:>5.0f} ms {p90 / p50:>8.2f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="sessions per tool and DAG (median taken)")
    parser.add_argument("--tests", type=int, default=20, help="tests per session, each running the DAG once")
    parser.add_argument("--dag", choices=["small", "ten", "both"], default="both")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.tests < 1:
        parser.error("--rounds and --tests must be at least 1")
    dags = ["small", "ten"] if args.dag == "both" else [args.dag]
    tools = available()
    missing = [t.name for t in TOOLS if t not in tools]
    samples = measure(dags, args.rounds, args.tests, tools)
    print(table(samples, args.tests))
    if missing:
        print(f"not installed, not measured: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
