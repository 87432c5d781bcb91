"""``pytest -n 2 --xcomsim``: each xdist worker has its own world, and nothing is left behind.

Run on the tier this session runs on: embedded by default, and on the same
real servers when --xcomsim-db/-redis/-s3-endpoint are given (the inner run
takes Redis DB indexes 8 and 9, so it cannot meet this session's).
"""

from __future__ import annotations

import json
import urllib.parse

import pytest

INNER = '''
import json, os
import pytest
from sqlalchemy import func, select, text
from xcomsim.scheduler.workload import workload_dag

DAG = workload_dag("xdist_probe")


@pytest.mark.parametrize("n", range(6))
def test_starts_empty_and_writes_everywhere(xcomsim_env, xcomsim_simulation, n):
    with xcomsim_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(text("dag_run"))).scalar_one() == 0
    assert xcomsim_env.redis.dbsize() == 0
    assert xcomsim_env.s3.list_objects_v2(Bucket=xcomsim_env.bucket).get("KeyCount", 0) == 0
    assert xcomsim_env.run_dag(DAG).succeeded
    xcomsim_env.redis.set(f"leak:{n}", "x")
    xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key=f"leak/{n}", Body=b"x")
    record = {
        "worker": os.environ.get("PYTEST_XDIST_WORKER"),
        "database": xcomsim_env.engine.url.database,
        "template": getattr(xcomsim_simulation.template, "name", None),
        "bucket": xcomsim_env.bucket,
        "redis_db": xcomsim_env.redis.connection_pool.connection_kwargs.get("db"),
    }
    with open(os.path.join(os.environ["XDIST_RECORD_DIR"], f"{n}.json"), "w") as f:
        json.dump(record, f)
'''


def _real_options(settings) -> list[str]:
    options = []
    if settings.db_url:
        options.append(f"--xcomsim-db={settings.db_url}")
    if settings.redis_url:
        parts = urllib.parse.urlsplit(settings.redis_url)
        options.append(f"--xcomsim-redis={urllib.parse.urlunsplit(parts._replace(path='/8'))}")
    if settings.s3_endpoint:
        options.append(f"--xcomsim-s3-endpoint={settings.s3_endpoint}")
    return options


def test_two_workers_each_with_their_own_world(clean_pytester, xcomsim_simulation, monkeypatch):
    records = clean_pytester.mkdir("records")
    monkeypatch.setenv("XDIST_RECORD_DIR", str(records))
    clean_pytester.makepyfile(test_inner=INNER)
    settings = xcomsim_simulation.settings
    result = clean_pytester.runpytest_subprocess("--xcomsim", "-n", "2", "-p", "no:randomly", *_real_options(settings))

    result.assert_outcomes(passed=6)
    seen = [json.loads(p.read_text()) for p in sorted(records.glob("*.json"))]
    assert {r["worker"] for r in seen} == {"gw0", "gw1"}
    if not settings.real_services:
        return
    by_worker = {w: [r for r in seen if r["worker"] == w] for w in ("gw0", "gw1")}
    if settings.s3_endpoint:
        assert len({r["bucket"] for r in seen}) == 6  # one bucket per test
        left = {b["Name"] for b in xcomsim_simulation.s3.client().list_buckets()["Buckets"]}
        assert not left & {r["bucket"] for r in seen}
    if settings.redis_url:
        assert {w: {r["redis_db"] for r in rs} for w, rs in by_worker.items()} == {"gw0": {8}, "gw1": {9}}
        import redis

        server = xcomsim_simulation.redis
        for db in (8, 9):
            with redis.Redis.from_url(server._raw, db=db) as client:
                assert client.dbsize() == 0
    if settings.db_url:
        assert len({r["database"] for r in seen}) == 6
        assert len({r["template"] for r in seen}) == 2  # one template per worker
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(xcomsim_simulation.template.server.url_of("postgres"), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                names = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
        finally:
            engine.dispose()
        assert not names & ({r["database"] for r in seen} | {r["template"] for r in seen})


@pytest.fixture(autouse=True)
def _needs_xdist():
    pytest.importorskip("xdist")
