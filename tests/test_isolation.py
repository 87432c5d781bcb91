"""Nothing one test writes is visible to another, whatever the order (pytest-randomly shuffles)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select, text

from airflow.sdk import DAG, task

with DAG("isolation_probe", start_date=datetime(2024, 1, 1), schedule=None) as probe_dag:

    @task
    def write(n: int = 0):
        return {"written": n}

    write()


def _counts(env) -> dict[str, int]:
    with env.engine.connect() as conn:
        tables = ("xcom", "dag_run", "task_instance", "dag")
        db = {t: conn.execute(select(func.count()).select_from(text(t))).scalar_one() for t in tables}
    objects = env.s3.list_objects_v2(Bucket=env.bucket).get("KeyCount", 0)
    return {**db, "redis_keys": env.redis.dbsize(), "s3_objects": objects}


@pytest.mark.parametrize("n", range(4))
def test_each_test_starts_empty_then_writes_everywhere(xcomsim_env, n):
    assert _counts(xcomsim_env) == dict.fromkeys(
        ("xcom", "dag_run", "task_instance", "dag", "redis_keys", "s3_objects"), 0
    )
    result = xcomsim_env.run_dag(probe_dag)
    assert result.succeeded, result.describe()
    xcomsim_env.redis.set(f"leak:{n}", "x")
    xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key=f"leak/{n}", Body=b"x")
    after = _counts(xcomsim_env)
    assert after["xcom"] == 1 and after["dag_run"] == 1 and after["redis_keys"] == 1
    assert after["s3_objects"] == 2  # ours, and the reference backend's push-once guard


# These two look inside the SQLite tier; tests/test_real_services.py checks the same on PostgreSQL.
sqlite_tier_only = pytest.mark.skipif(
    "config.getoption('xcomsim_db') or config.getini('xcomsim_db')",
    reason="inspects the in-memory SQLite clone and its template file (--xcomsim-db is set)",
)


@sqlite_tier_only
def test_metadata_db_is_fully_migrated_in_memory(xcomsim_env, xcomsim_simulation):
    assert xcomsim_env.engine.url.render_as_string() == "sqlite://"
    with xcomsim_env.engine.connect() as conn:
        version = conn.execute(text("select version_num from alembic_version")).scalar_one()
    from airflow.utils.db import _REVISION_HEADS_MAP

    assert version == list(_REVISION_HEADS_MAP.values())[-1]


@sqlite_tier_only
def test_template_never_sees_a_tests_writes(xcomsim_env, xcomsim_simulation):
    xcomsim_env.run_dag(probe_dag)
    import sqlite3

    template = sqlite3.connect(f"file:{xcomsim_simulation.template.path}?mode=ro", uri=True)
    try:
        assert template.execute("select count(*) from dag_run").fetchone() == (0,)
    finally:
        template.close()


def test_reset_gives_a_fresh_world_inside_one_test(xcomsim_env):
    xcomsim_env.run_dag(probe_dag)
    xcomsim_env.redis.set("k", "v")
    xcomsim_env.reset()
    assert _counts(xcomsim_env)["xcom"] == 0
    assert xcomsim_env.redis.dbsize() == 0


def test_two_runs_in_one_test_keep_both(xcomsim_env):
    first = xcomsim_env.run_dag(probe_dag)
    second = xcomsim_env.run_dag(probe_dag)
    assert first.run_id != second.run_id
    assert _counts(xcomsim_env)["dag_run"] == 2


def test_every_clone_gets_airflows_connection_settings(xcomsim_env):
    """The engine outlives each clone (its statement cache is shared): Airflow's per-connection PRAGMAs
    (foreign keys on, so deleting a run cascades to its XCom rows) must reach every clone's connections."""
    if xcomsim_env.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL enforces foreign keys on every connection")
    for _ in range(2):
        with xcomsim_env.engine.connect() as conn:
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        xcomsim_env.reset()
