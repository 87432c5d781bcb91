"""How fast the harness itself is, against what it replaces, measured in one process.

* a fresh per-test metadata DB (backup-clone + install) vs a full ``airflow db migrate``;
* a warm harness DAG run (with and without a fresh environment) vs a warm ``dag.test()``
  of the same DAG file;
* the race scheduler's examples per second (``race_speed``);
* what the interception hooks, installed but idle, add to a raw client call (``overhead``).

Run: ``python -m xcomsim.bench.harness_speed [--runs N] [--examples N]``, or ``xcomsim bench --harness``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xcomsim.bench.dags import two_tasks
from xcomsim.env import Simulation
from xcomsim.settings import HarnessSettings

_DAG_FILE = two_tasks("bench_two_tasks")


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


def write_dag(folder: Path) -> None:
    """Put the measured DAG file in ``folder``: a simulation measured with ``sim=`` must have it in its dags folder."""
    (folder / "bench_two_tasks.py").write_text(_DAG_FILE)


def measure(runs: int = 15, migrations: int = 3, sim: Simulation | None = None) -> dict[str, float]:
    """Medians in seconds. Run it after other measurements in ``sim``: the migrations reconfigure Airflow's ORM."""
    if sim is None:
        dags = Path(tempfile.mkdtemp(prefix="xcomsim-bench-dags-"))
        write_dag(dags)
        with Simulation.start(HarnessSettings(dags_folder=dags)) as own:
            return measure(runs, migrations, own)
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
        ("first migrate of the session (0: the template cache served it)", ms["first_migrate_s"]),
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


def measure_all(sim: Simulation, runs: int = 15, examples: int = 100, calls: int = 2000,
                repeat: int = 5) -> dict[str, Any]:  # fmt: skip
    """Everything above in one simulation, side by side: harness speed, race examples/s, hook overhead."""
    from xcomsim.bench import overhead, race_speed

    with sim.environment() as env:
        costs = overhead.measure(env, calls)
    race = race_speed.measure(examples, sim, repeat)
    speed = measure(runs, sim=sim)  # last: the migrations reconfigure Airflow's ORM
    return {
        "speed_s": speed,
        "race_examples_per_s": race,
        "overhead": [{"call": o.call, "raw_us": round(o.raw_us, 2), "hooked_us": round(o.hooked_us, 2),
                      "percent": round(o.percent, 2)} for o in costs],  # fmt: skip
    }


def report_all(results: dict[str, Any]) -> str:
    lines = [report(results["speed_s"]), "", f"{'race scheduler (derandomised examples)':<72}{'examples/s':>12}"]
    lines += [f"{name:<72}{rate:>12.1f}" for name, rate in results["race_examples_per_s"].items()]
    lines += ["", f"{'idle interception hooks, median per call':<40}{'raw us':>10}{'hooked us':>11}{'overhead':>10}"]
    lines += [f"{o['call']:<40}{o['raw_us']:>10.1f}{o['hooked_us']:>11.1f}{o['percent']:>9.1f}%"
              for o in results["overhead"]]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per measure (median reported)")
    parser.add_argument("--examples", type=int, default=100, help="race-scheduler examples per measure")
    parser.add_argument("--calls", type=int, default=2000, help="calls per arm of the overhead measure")
    args = parser.parse_args(argv)
    dags = Path(tempfile.mkdtemp(prefix="xcomsim-bench-dags-"))
    write_dag(dags)
    with Simulation.start(HarnessSettings(dags_folder=dags)) as sim:
        print(report_all(measure_all(sim, args.runs, args.examples, args.calls)))


if __name__ == "__main__":
    main()
