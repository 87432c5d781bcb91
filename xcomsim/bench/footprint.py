"""What one XCom costs the metadata DB: the stored row, and the database's growth.

Run: ``python -m xcomsim.bench.footprint [--size BYTES]``. Pushes one string
value of the given serialised size through the reference backend, inline and
offloaded (S3, Redis), and reports the bytes of the ``xcom.value`` column and
the growth of the SQLite database (pages x page size) for that one push.
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
