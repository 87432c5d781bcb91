"""How fast the harness itself is, against what it replaces, measured in one process.

* a fresh per-test metadata DB (backup-clone + install) vs a full ``airflow db migrate``;
* a warm harness DAG run (with and without a fresh environment) vs a warm ``dag.test()``
  of the same DAG file.

Run: ``python -m xcomsim.bench.harness_speed [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from xcomsim.env import Simulation
from xcomsim.settings import HarnessSettings

_DAG_FILE = textwrap.dedent(
    """
    from datetime import datetime
    from airflow.sdk import DAG, task

    with DAG("bench_two_tasks", start_date=datetime(2024, 1, 1), schedule=None):
        @task
        def produce():
            return {"n": 1}

        @task
        def consume(payload):
            return payload["n"] + 1

        consume(produce())
    """
)


def _median_seconds(action: Callable[[], object], runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _migrate_once(folder: Path, index: int) -> None:
    from airflow import settings
    from airflow.utils import db

    saved = settings.SQL_ALCHEMY_CONN
    settings.SQL_ALCHEMY_CONN = f"sqlite:///{folder / f'migrate-{index}.db'}"
    try:
        settings.configure_orm()
        db.initdb()
    finally:
        settings.dispose_orm(do_log=False)
        settings.SQL_ALCHEMY_CONN = saved


def measure(runs: int = 15, migrations: int = 3) -> dict[str, float]:
    dags = Path(tempfile.mkdtemp(prefix="xcomsim-bench-dags-"))
    (dags / "bench_two_tasks.py").write_text(_DAG_FILE)
    with Simulation.start(HarnessSettings(dags_folder=dags)) as sim:
        results: dict[str, float] = {"first_migrate_s": sim.template.migrate_seconds}
        folder = Path(tempfile.mkdtemp(prefix="xcomsim-bench-migrate-"))
        counter = iter(range(10_000))
        results["migrate_s"] = _median_seconds(lambda: _migrate_once(folder, next(counter)), migrations, 0)

        def clone_and_install() -> None:
            db = sim.template.clone()
            db.install()
            db.close()

        results["fresh_db_s"] = _median_seconds(clone_and_install, runs * 4)

        dag = sim.dags.get("bench_two_tasks")
        with sim.environment() as env:
            results["harness_run_s"] = _median_seconds(lambda: env.run_dag(dag), runs, warmup=2)
            results["fresh_env_and_run_s"] = _median_seconds(lambda: (env.reset(), env.run_dag(dag)), runs, 2)
            env.reset()
            results["dag_test_s"] = _median_seconds(dag.test, runs, warmup=2)
    return results


def report(results: dict[str, float]) -> str:
    ms = {k: v * 1000 for k, v in results.items()}
    rows = [
        ("fresh per-test metadata DB (clone + install)", ms["fresh_db_s"]),
        ("first migrate of the session (cold imports)", ms["first_migrate_s"]),
        ("warm airflow db migrate (new SQLite file)", ms["migrate_s"]),
        ("warm harness run, 2-task DAG", ms["harness_run_s"]),
        ("fresh environment + harness run", ms["fresh_env_and_run_s"]),
        ("warm dag.test(), same DAG", ms["dag_test_s"]),
    ]
    lines = [f"{'measure (median)':<48}{'ms':>12}", "-" * 60]
    lines += [f"{name:<48}{value:>12.2f}" for name, value in rows]
    lines += [
        "-" * 60,
        f"warm migrate / fresh DB:            {results['migrate_s'] / results['fresh_db_s']:>10.0f}x",
        f"first migrate / fresh DB:           {results['first_migrate_s'] / results['fresh_db_s']:>10.0f}x",
        f"dag.test() / harness run:           {results['dag_test_s'] / results['harness_run_s']:>10.2f}x",
        f"dag.test() / (fresh env + run):     {results['dag_test_s'] / results['fresh_env_and_run_s']:>10.2f}x",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per measure (median reported)")
    args = parser.parse_args(argv)
    print(report(measure(runs=args.runs)))


if __name__ == "__main__":
    main()
