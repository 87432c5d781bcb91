"""The ``xcomsim`` console command."""

from __future__ import annotations

import argparse
import sys
import time


def _gc(args: argparse.Namespace) -> int:
    from xcomsim.backend import config
    from xcomsim.backend.errors import ExclusiveXComError
    from xcomsim.backend.gc import sweep

    try:
        path = args.path or config.load().path
        url = args.sql_alchemy_conn or _airflow_db_url()
        report = sweep(path, url, dry_run=args.dry_run)
    except ExclusiveXComError as exc:
        print(f"xcomsim gc: {exc}", file=sys.stderr)
        return 2
    print(report.describe())
    for name in report.orphan_values + report.stale_guards:
        print(f"  {'would delete' if args.dry_run else 'deleted'} {report.store}/{name}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import tempfile
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from xcomsim.bench import harness_speed, standard
    from xcomsim.env import Simulation
    from xcomsim.errors import XcomsimError
    from xcomsim.settings import HarnessSettings

    config = standard.StandardConfig.quick() if args.quick else standard.StandardConfig()
    config = config.replace(size=args.size, rounds=args.rounds, runs=args.runs, workers=args.workers,
                            backend=args.backend)  # fmt: skip
    out = Console(width=None if sys.stdout.isatty() else 160)  # a pipe or file gets the whole table
    err = Console(stderr=True)
    dags = Path(tempfile.mkdtemp(prefix="xcomsim-bench-dags-"))
    harness_speed.write_dag(dags)
    services = {field: getattr(args, option) for option, field in _REAL_SERVICES.items() if getattr(args, option)}
    known = {f.name for f in dataclasses.fields(HarnessSettings)}
    if set(services) - known:
        err.print("xcomsim bench: this xcomsim cannot use real servers yet (no "
                  f"{', '.join(sorted(set(services) - known))} setting)", highlight=False)  # fmt: skip
        return 2
    total = 1 + standard.steps(config) + (1 if args.harness else 0)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:  # fmt: skip
        bar = progress.add_task("starting the simulated Airflow", total=total)
        try:
            with Simulation.start(HarnessSettings(dags_folder=dags, **services)) as sim:
                progress.advance(bar)

                def step(description: str) -> None:
                    progress.update(bar, advance=1, description=description)

                report = standard.run(sim, config, step)
                harness = None
                if args.harness:
                    progress.update(bar, description="harness speed, race scheduler, hooks")
                    q = args.quick
                    harness = harness_speed.measure_all(sim, runs=3 if q else 15, examples=5 if q else 30,
                                                        calls=100 if q else 2000)  # fmt: skip
                    step("harness")
        except XcomsimError as exc:
            err.print(f"xcomsim bench: {exc}", highlight=False)
            return 2
    out.print(standard.table(report))
    for line in standard.notes(report):
        out.print(line, highlight=False)
    if harness is not None:
        out.print()
        out.print(harness_speed.report_all(harness), highlight=False)
    wall = time.perf_counter() - started
    out.print(f"total wall time {wall:.1f} s (including the simulation's start)", highlight=False)
    if args.json:
        document = {**report.as_json(), "harness": harness, "wall_seconds": round(wall, 2)}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        out.print(f"wrote {args.json}", highlight=False)
    return 0


# command-line option (argparse dest) -> HarnessSettings field, as the pytest plugin's --xcomsim-db etc.
_REAL_SERVICES = {"db": "db_url", "redis": "redis_url", "s3_endpoint": "s3_endpoint"}


def _size(text: str) -> int:
    units = {"kib": 1024, "mib": 1024**2, "b": 1}
    lowered = text.strip().lower()
    number, scale = lowered, 1
    for unit, unit_scale in units.items():
        if lowered.endswith(unit):
            number, scale = lowered[: -len(unit)].strip(), unit_scale
            break
    if not number.isdigit() or int(number) * scale < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size of at least 2 bytes, such as 1024, 64KiB or 1MiB")
    return int(number) * scale


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _airflow_db_url() -> str:
    from airflow.configuration import conf

    return conf.get("database", "sql_alchemy_conn")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, without running anything (the docs' commands are checked against it)."""
    parser = argparse.ArgumentParser(prog="xcomsim", description="xcomsim: harness and tools for Airflow XCom")
    commands = parser.add_subparsers(dest="command", required=True)
    gc = commands.add_parser(
        "gc", help="delete offloaded XCom objects no xcom row references (and guards of deleted runs)"
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    gc.add_argument("--path", help="object store, e.g. s3://aws_default@bucket/xcom (default: [xcomsim] config)")
    gc.add_argument("--sql-alchemy-conn", help="metadata DB URL (default: Airflow's [database] sql_alchemy_conn)")
    gc.set_defaults(run=_gc)
    bench = commands.add_parser(
        "bench",
        help="measure backends (xcom table growth, push/pull latency, throughput) and print one table",
        description="Runs a short standard set against Airflow's DB backend and ExclusiveXCom (inline, "
        "offloaded to S3, to Redis) in a simulated Airflow, and prints one table. Under the embedded "
        "default the stores are fakes (fakeredis, moto, in-memory SQLite): not latency proxies; "
        "--db, --redis and --s3-endpoint (the pytest plugin's --xcomsim-db, --xcomsim-redis and "
        "--xcomsim-s3-endpoint) point it at real servers for real figures.",
    )
    bench.add_argument("--quick", action="store_true", help="a few rounds only: checks the command, not the numbers")
    bench.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    bench.add_argument("--size", type=_size, help="payload of the push/pull columns (default 1MiB)")
    bench.add_argument("--rounds", type=_positive, help="timed pulls per backend (default 30; pushes: half)")
    bench.add_argument("--runs", type=_positive, help="DAG runs per backend for the xcom table column (default 2)")
    bench.add_argument("--workers", type=_positive, help="concurrent workers for the throughput column (default 4)")
    bench.add_argument("--backend", help="also measure this XCom backend (dotted path)")
    bench.add_argument("--harness", action="store_true",
                       help="also measure the harness: fresh DB vs migrate, run vs dag.test(), race examples/s, "
                            "hook overhead")  # fmt: skip
    bench.add_argument("--db", metavar="URL", help="a real metadata DB server, e.g. postgresql+psycopg://u:p@host/db")
    bench.add_argument("--redis", metavar="URL", help="a real Redis, e.g. redis://127.0.0.1:6379/0")
    bench.add_argument("--s3-endpoint", metavar="URL", help="a real S3 endpoint, e.g. http://127.0.0.1:9000")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
