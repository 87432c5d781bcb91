"""The ``xcomsim`` console command."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _gc(args: argparse.Namespace) -> int:
    entries = dict(args.config or ())
    # The DB to sweep is not Airflow's own engine (which would need every async driver): same as --sql-alchemy-conn.
    args.sql_alchemy_conn = args.sql_alchemy_conn or entries.pop("database.sql_alchemy_conn", None)
    os.environ.update(_config_env(list(entries.items())))  # before Airflow reads its config
    _quiet()
    from xcomsim.backend import config
    from xcomsim.backend.errors import ExclusiveXComError
    from xcomsim.backend.gc import sweep
    from xcomsim.backend.stores import open_store

    url = ""
    try:
        # every store values live in (small ones may be with the guards); none configured: say so before the DB
        stores = [open_store(path) for path in ([args.path] if args.path else config.load().value_paths)]
        url = args.sql_alchemy_conn or _airflow_db_url()
        _check_metadata_db(url)
        reports = [sweep(store, url, dry_run=args.dry_run) for store in stores]
    except (ExclusiveXComError, _GcError) as exc:
        print(f"xcomsim gc: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not _is_store_error(exc):
            raise  # a bug of ours: the traceback is the report
        from xcomsim.bench.standard import one_line

        print(f"xcomsim gc: {one_line(exc)} (metadata DB {_masked(url)}, store {args.path or 'from config'})",
              file=sys.stderr)  # fmt: skip
        return 2
    for report in reports:
        print(report.describe())
        for name in report.orphan_values + report.stale_guards:
            print(f"  {'would delete' if args.dry_run else 'deleted'} {report.store}/{name}")
    return 0


class _GcError(Exception):
    """A metadata DB gc cannot read; the message says which and what to do."""


def _masked(url: str) -> str:
    from xcomsim.env.naming import mask_url

    return mask_url(url) if url else "(none)"


def _check_metadata_db(url: str) -> None:
    """One clear line, before any sweeping, when the DB is unreachable or was never migrated."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise _GcError(f"cannot read the metadata DB {_masked(url)}: {reason}") from None
    missing = sorted({"xcom", "dag_run"} - tables)
    if missing:
        raise _GcError(
            f"the metadata DB {_masked(url)} has no {' or '.join(missing)} table: it is not an Airflow 3 metadata "
            "DB that was migrated. Point --sql-alchemy-conn (or --config database.sql_alchemy_conn=...) at your "
            "Airflow's DB, or run `airflow db migrate` against this one"
        )


def _is_store_error(exc: BaseException) -> bool:
    """Errors of the stores gc talks to (DB, S3, Redis), shown as one line rather than a traceback."""
    names = {cls.__module__.split(".")[0] for cls in type(exc).__mro__}
    return bool(names & {"sqlalchemy", "botocore", "boto3", "redis"})


def _config_entry(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    section, dot, option = name.strip().rpartition(".")
    if not eq or not dot or not section or not option:
        raise argparse.ArgumentTypeError(f"{text!r} is not section.option=value, e.g. xcomsim.xcom_objectstorage_threshold=0")
    return name.strip(), value


def _config_env(entries: list[tuple[str, str]] | None) -> dict[str, str]:
    from xcomsim.settings import HarnessSettings

    return HarnessSettings(config=dict(entries or ())).config_env()


def _quiet() -> None:
    """The user's command's own output only: no warnings or INFO logs from Airflow's internals."""
    import logging

    from xcomsim.noise import ignore_airflow_warnings

    ignore_airflow_warnings()
    for name in ("airflow", "botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


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
                            backend=args.backend, backend_config=tuple(args.config or ()) or None)  # fmt: skip
    _quiet()
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
            settings = HarnessSettings(dags_folder=dags, config=dict(config.backend_config), **services,
                                       **({"bucket": args.bucket} if args.bucket else {}))  # fmt: skip
            with Simulation.start(settings) as sim:
                progress.advance(bar)

                def step(description: str) -> None:
                    progress.update(bar, advance=1, description=description)

                report = standard.run(sim, config, step)
                harness = None
                if args.harness:
                    progress.update(bar, description="harness speed, race scheduler, hooks")
                    q = args.quick
                    harness = harness_speed.measure_all(sim, runs=3 if q else 15, examples=5 if q else 30,
                                                        calls=100 if q else 2000, repeat=1 if q else 3)  # fmt: skip
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
    document = {**report.as_json(), "harness": harness, "wall_seconds": round(wall, 2)}
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        out.print(f"wrote {args.json}", highlight=False)
    if args.html:
        from xcomsim import html_report

        written = html_report.write(args.html, {"title": "xcomsim bench", "bench": document})
        out.print(f"wrote {written}", highlight=False)
    return 0


def _airflow_option(text: str) -> tuple[str, str]:
    """``section.key=value`` -> ("section.key", "value"): an Airflow option as ``airflow.cfg`` names it."""
    name, equals, value = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not equals or not dot or not section or not key or "." in key:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECTION.KEY=VALUE (e.g. xcomsim.xcom_objectstorage_threshold=4096)")
    return f"{section}.{key}", value


def _soak(args: argparse.Namespace) -> int:
    from xcomsim.soak import SoakError
    from xcomsim.soak import run as soak_run

    faults = frozenset(f for f in (args.faults or "").split(",") if f)
    unknown = sorted(faults - set(soak_run.nemesis.KINDS))
    if unknown:
        print(f"xcomsim soak: unknown fault kind(s) {unknown}; use {','.join(soak_run.nemesis.KINDS)}", file=sys.stderr)
        return 2
    try:  # every soak command: bad input (SoakError) in one line, Ctrl-C after everything it started is stopped
        if args.compare:
            return _soak_compare(args)
        if args.mutants:
            return _soak_mutants(args, faults)
        return _soak_one(args, faults)
    except SoakError as exc:
        print(f"xcomsim soak: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xcomsim soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def _soak_one(args: argparse.Namespace, faults: frozenset[str]) -> int:
    from xcomsim.soak import run as soak_run

    options = soak_run.Options(minutes=args.minutes, backend=args.backend, workers=args.workers, seed=args.seed,
                               faults=faults, runs_in_flight=args.runs, airflow_url=args.airflow_url,
                               db_url=args.db, s3_endpoint=args.s3_endpoint, dags_folder=args.dags_folder,
                               history_dir=args.history_dir, logs_to=args.logs, config=args.config)  # fmt: skip
    result = soak_run.soak(options)
    print(soak_run.describe(result))
    if args.json:
        soak_run.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.report:
        from xcomsim.soak import report

        print(f"wrote {report.write(args.report, result)}")
    return 1 if result.broken else 0


def _soak_compare(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from xcomsim.soak import throughput

    result = throughput.compare([args.backend, args.compare], args.minutes, args.rounds, args.seed, args.runs,
                                lambda line: print(line, file=sys.stderr), dict(args.config))  # fmt: skip
    print(throughput.table(result))
    print(f"{args.rounds} round(s) of {args.minutes:g} min each, alternating; medians. machine: {result['machine']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _soak_mutants(args: argparse.Namespace, faults: frozenset[str]) -> int:
    """Each named backend (mutants of the catalogue, the reference too if named) through the same soak."""
    import json
    from pathlib import Path

    from xcomsim.soak import modelcheck
    from xcomsim.soak import run as soak_run

    backends = list(modelcheck.SOAKABLE) if args.mutants == "all" else [b for b in args.mutants.split(",") if b]
    options = soak_run.Options(minutes=args.minutes, workers=args.workers, seed=args.seed, faults=faults,
                               runs_in_flight=args.runs, logs_to=args.logs, config=args.config)  # fmt: skip
    found = modelcheck.model_check(backends, options, lambda line: print(line, file=sys.stderr))
    for detection in found:
        print(detection.verdicts)
    print(modelcheck.table(found))
    if args.json:
        Path(args.json).write_text(json.dumps([d.as_dict() for d in found], indent=1) + "\n")
        print(f"wrote {args.json}")
    missed = [d.backend for d in found if d.invariant and not d.caught]
    reference_broke = [d.backend for d in found if not d.invariant and d.broken]
    return 1 if missed or reference_broke else 0


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
    gc.add_argument("--path", help="one object store, e.g. s3://aws_default@bucket/xcom (default: every store "
                    "[xcomsim] keeps values in: xcom_objectstorage_path, and guard_path when guard_path_values_below "
                    "is set)")
    gc.add_argument("--sql-alchemy-conn", help="metadata DB URL (default: Airflow's [database] sql_alchemy_conn)")
    gc.add_argument("--config", action="append", type=_config_entry, metavar="SECTION.OPTION=VALUE",
                    help="Airflow config for this command, repeatable, e.g. xcomsim.xcom_objectstorage_path=s3://...")  # fmt: skip
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
    bench.add_argument("--html", metavar="PATH", help="also write the charts as one self-contained HTML page")
    bench.add_argument("--size", type=_size, help="payload of the push/pull columns (default 1MiB)")
    bench.add_argument("--rounds", type=_positive, help="timed pulls per backend (default 30; pushes: half)")
    bench.add_argument("--runs", type=_positive, help="DAG runs per backend for the xcom table column (default 2)")
    bench.add_argument("--workers", type=_positive, help="concurrent workers for the throughput column (default 4)")
    bench.add_argument("--backend", help="also measure this XCom backend (dotted path; looked for in the current "
                                         "directory too)")  # fmt: skip
    bench.add_argument("--config", action="append", type=_config_entry, metavar="SECTION.OPTION=VALUE",
                       help="Airflow config for every backend measured, repeatable (a standard row's own settings "
                            "win), e.g. common.io.xcom_objectstorage_path=s3://aws_default@xcomsim/xcom")  # fmt: skip
    bench.add_argument("--bucket", help="S3 bucket the simulated S3 starts with (default: xcomsim)")
    bench.add_argument("--harness", action="store_true",
                       help="also measure the harness: fresh DB vs migrate, run vs dag.test(), race examples/s, "
                            "hook overhead")  # fmt: skip
    bench.add_argument("--db", metavar="URL", help="a real metadata DB server, e.g. postgresql+psycopg://u:p@host/db")
    bench.add_argument("--redis", metavar="URL", help="a real Redis, e.g. redis://127.0.0.1:6379/0")
    bench.add_argument("--s3-endpoint", metavar="URL", help="a real S3 endpoint, e.g. http://127.0.0.1:9000")
    bench.set_defaults(run=_bench)
    soak = commands.add_parser(
        "soak", help="run a real Airflow deployment (Celery, PostgreSQL, Redis, S3) under load and faults, and "
                     "judge the XCom backend with the kit's invariants",
        description="Starts a Celery deployment on loopback from installed packages (PostgreSQL and redis-server: "
                    "apt-get install -y postgresql redis-server faketime), or drives an existing one, triggers "
                    "generated DAGs, injects faults on a schedule drawn from the seed, and prints the verdict "
                    "table. Everything it started is stopped at the end, on Ctrl-C and on a crash.",
    )  # fmt: skip
    soak.add_argument("--minutes", type=float, default=3.0, help="how long the workload runs (default 3)")
    soak.add_argument("--backend", default="xcomsim.backend.ExclusiveXCom", help="the XCom backend (dotted path)")
    soak.add_argument("--workers", type=_positive, default=2, help="Celery workers (default 2)")
    soak.add_argument("--seed", type=int, default=0, help="reproduces the workload and the fault schedule")
    soak.add_argument("--faults", default="kill,pause,skew,restart",
                      help="fault kinds, comma-separated: kill,pause,skew,restart (empty: none)")
    soak.add_argument("--runs", type=_positive, default=6, help="DAG runs kept in flight (default 6)")
    soak.add_argument("--report", metavar="PATH.html", help="also write the HTML report (one lane per worker)")
    soak.add_argument("--json", metavar="PATH", help="also write verdicts, figures and the whole history as JSON")
    soak.add_argument("--config", metavar="SECTION.KEY=VALUE", type=_airflow_option, action="append", default=[],
                      help="an Airflow option for the deployment it starts, repeatable (e.g. "
                           "xcomsim.xcom_objectstorage_path=redis://xcomsim_soak_redis/values: values offloaded to Redis)")
    soak.add_argument("--logs", metavar="DIR", help="copy the deployment's logs here before it is removed")
    soak.add_argument("--airflow-url", help="drive this existing deployment instead of starting one")
    soak.add_argument("--db", metavar="URL", help="with --airflow-url: its metadata DB (SQLAlchemy URL)")
    soak.add_argument("--s3-endpoint", metavar="URL", help="with --airflow-url: its S3 endpoint")
    soak.add_argument("--dags-folder", help="with --airflow-url: its dags folder, as this machine sees it")
    soak.add_argument("--history-dir", help="with --airflow-url: a folder its workers and this machine share")
    soak.add_argument("--compare", metavar="BACKEND", help="measure instead: the same workload, without faults, "
                      "with --backend and this one on one deployment, alternating (e.g. airflow.sdk.bases.xcom.BaseXCom)")
    soak.add_argument("--rounds", type=_positive, default=2, help="with --compare: rounds per backend (default 2)")
    soak.add_argument("--mutants", metavar="all|BACKEND,...", help="model check instead: each backend (mutants of "
                      "the catalogue; the reference too if named) through the same soak on one deployment; exits 1 "
                      "when a mutant is not caught or the reference breaks a guarantee")  # fmt: skip
    soak.set_defaults(run=_soak)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
