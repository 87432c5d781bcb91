"""The ``xcomsim`` console command."""

from __future__ import annotations

import argparse
import sys


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


def _airflow_db_url() -> str:
    from airflow.configuration import conf

    return conf.get("database", "sql_alchemy_conn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xcomsim", description="xcomsim: harness and tools for Airflow XCom")
    commands = parser.add_subparsers(dest="command", required=True)
    gc = commands.add_parser(
        "gc", help="delete offloaded XCom objects no xcom row references (and guards of deleted runs)"
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    gc.add_argument("--path", help="object store, e.g. s3://aws_default@bucket/xcom (default: [xcomsim] config)")
    gc.add_argument("--sql-alchemy-conn", help="metadata DB URL (default: Airflow's [database] sql_alchemy_conn)")
    gc.set_defaults(run=_gc)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
