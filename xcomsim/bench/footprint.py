"""What XComs cost the metadata DB: the stored row, the table, and the database's growth.

Run: ``python -m xcomsim.bench.footprint [--size BYTES]``. Pushes one string
value of the given serialised size through the reference backend, inline and
offloaded (S3, Redis), and reports the bytes of the ``xcom.value`` column and
the growth of the SQLite database (pages x page size) for that one push.

``xcom_table_bytes`` and ``per_runs`` measure what DAG runs add to the ``xcom``
table (its records and indexes), which is what the ``xcomsim bench`` table and
the benchmark suite report.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from xcomsim.env import Simulation
from xcomsim.settings import HarnessSettings

MODES = {
    "inline": {"xcomsim.xcom_objectstorage_threshold": -1},
    "offload to S3": {"xcomsim.xcom_objectstorage_threshold": 65536},
    "offload to Redis": {
        "xcomsim.xcom_objectstorage_threshold": 65536,
        "xcomsim.xcom_objectstorage_path": "redis://redis_default/xcom",
    },
}


@dataclass(frozen=True)
class Footprint:
    mode: str
    value_bytes: int
    row_value_bytes: int
    db_growth_bytes: int


def _db_bytes(conn: Any) -> int:
    conn.execute(text("VACUUM"))  # count live pages only
    return conn.execute(text("PRAGMA page_count")).scalar_one() * conn.execute(text("PRAGMA page_size")).scalar_one()


def _one_push_dag(size: int) -> Any:
    from airflow.sdk import DAG, task

    with DAG("footprint", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def push():
            return "f" * (size - 2)  # the JSON quotes make up the rest

        push()
    return dag


def xcom_table_bytes(engine: Any) -> int:
    """Bytes the ``xcom`` table holds.

    SQLite: the record payload of the table and its indexes (``dbstat``), so a
    few small rows count even when they fit in pages already allocated.
    PostgreSQL: ``pg_total_relation_size`` (heap, TOAST and indexes).
    """
    dialect = engine.dialect.name
    if dialect == "sqlite":
        query = ("SELECT coalesce(sum(payload), 0) FROM dbstat "
                 "WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'xcom')")  # fmt: skip
    elif dialect == "postgresql":
        query = "SELECT pg_total_relation_size('xcom')"
    else:
        raise NotImplementedError(f"xcom table size on {dialect} is not measured (SQLite and PostgreSQL are)")
    with engine.connect() as conn:
        return int(conn.execute(text(query)).scalar_one())


@dataclass(frozen=True)
class RunsFootprint:
    """What ``runs`` DAG runs added to the ``xcom`` table."""

    dag_id: str
    runs: int
    rows: int
    table_growth_bytes: int

    @property
    def bytes_per_run(self) -> float:
        return self.table_growth_bytes / self.runs

    @property
    def bytes_per_100_runs(self) -> float:
        """Per 100 runs: every run adds the same rows, so growth scales with the run count."""
        return self.bytes_per_run * 100


def per_runs(env: Any, dag: Any, runs: int) -> RunsFootprint:
    """Run ``dag`` ``runs`` times in ``env`` (each must succeed) and measure the table's growth."""
    before = xcom_table_bytes(env.engine)
    rows_before = len(env.xcom_rows())
    for _ in range(runs):
        result = env.run_dag(dag)
        if not result.succeeded:
            raise RuntimeError(f"{dag.dag_id} did not succeed:\n{result.describe()}")
    return RunsFootprint(dag.dag_id, runs, len(env.xcom_rows()) - rows_before, xcom_table_bytes(env.engine) - before)


def offload_pipeline_dag(rows: int = 40_000) -> Any:
    """The shape of ``scenarios/dags/s3_offload_pipeline``: about 4 MB of records, then a small summary.

    Built here so ``xcomsim bench`` needs no scenario files on the machine.
    """
    from airflow.sdk import DAG, task

    with DAG("xcomsim_bench_offload_pipeline", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def produce():
            return [{"id": i, "payload": f"row-{i:08d}-" + "x" * 80} for i in range(rows)]

        @task
        def summarise(records):
            return {"rows": len(records), "last": records[-1]["id"]}

        summarise(produce())
    return dag


def measure(size: int = 1024 * 1024) -> Iterator[Footprint]:
    with Simulation.start(HarnessSettings()) as sim:
        dag = _one_push_dag(size)
        for mode, config in MODES.items():
            with sim.environment(config=config) as env:
                env.run_dag(dag)
                with env.engine.connect() as conn:
                    row = conn.execute(text("SELECT length(CAST(value AS BLOB)) FROM xcom")).scalar_one()
                    with_row = _db_bytes(conn)
                    conn.execute(text("DELETE FROM xcom"))
                    conn.commit()
                    without_row = _db_bytes(conn)
                yield Footprint(mode, size, int(row), with_row - without_row)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="serialised value size in bytes")
    args = parser.parse_args(argv)
    print(f"{'mode':<18}{'value B':>12}{'xcom.value B':>15}{'DB growth B':>14}")
    for f in measure(args.size):
        print(f"{f.mode:<18}{f.value_bytes:>12}{f.row_value_bytes:>15}{f.db_growth_bytes:>14}")


if __name__ == "__main__":
    main()
