"""The sweeper finds objects no xcom row references (dry run), deletes only those, and guards of gone runs."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

from airflow.sdk import DAG, task
from xcomsim.backend import XComPolicy, codec
from xcomsim.backend.gc import sweep
from xcomsim.cli import main

with DAG("gc_probe", start_date=datetime(2024, 1, 1), schedule=None) as gc_dag:

    @task
    def big():
        return "g" * 5000

    big()

XComPolicy(pushes={"big": ["return_value"]}).attach(gc_dag)


def _orphan(n: int) -> str:
    """The name an object of a coordinate whose row is gone has (this backend's own scheme)."""
    return codec.object_name("gone_dag", "r", "t", -1, f"orphan{n}", attempt=1)


FOREIGN = ("xcom/README.txt", "xcom/values/ledger.csv", "xcom/guards/notes.md")  # a user's files under the prefix


def _keys(env, prefix):
    return sorted(o["Key"] for o in env.s3.list_objects_v2(Bucket=env.bucket, Prefix=prefix).get("Contents", []))


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000, "xcomsim.gc_grace_seconds": 0})
def test_dry_run_lists_then_sweep_deletes_only_orphans(run_dag, xcomsim_env):
    run_dag(gc_dag)
    path = f"s3://aws_default@{xcomsim_env.bucket}/xcom"
    for n in range(3):  # objects left behind by rows deleted without purge
        xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key=f"xcom/{_orphan(n)}", Body=b"x")
    gone = codec.object_name("gone", "r", "t", -1, "k", kind="guards")
    xcomsim_env.s3.put_object(
        Bucket=xcomsim_env.bucket,
        Key=f"xcom/{gone}",
        Body=b'{"dag_id": "gone", "run_id": "r", "task_id": "t", "map_index": -1, "key": "k"}',
    )
    for key in FOREIGN:
        xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key=key, Body=b"not an XCom")

    dry = sweep(path, xcomsim_env.engine, dry_run=True)
    assert dry.referenced == 1
    assert dry.orphan_values == sorted(_orphan(n) for n in range(3))
    assert dry.stale_guards == [gone]
    assert len(_keys(xcomsim_env, "xcom/values/")) == 5  # nothing deleted

    done = sweep(path, xcomsim_env.engine, dry_run=False)
    assert done.deleted == 4
    assert len(_keys(xcomsim_env, "xcom/values/")) == 2  # the live value and the user's ledger
    assert len(_keys(xcomsim_env, "xcom/guards/")) == 2  # the live run's guard stays, and the user's notes
    assert all(_keys(xcomsim_env, key) == [key] for key in FOREIGN)  # never a name of its own scheme
    assert sweep(path, xcomsim_env.engine).orphan_values == []


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000, "xcomsim.gc_grace_seconds": 0})
def test_cli_gc_dry_run_and_sweep(run_dag, xcomsim_env, tmp_path, capsys):
    run_dag(gc_dag)
    xcomsim_env.s3.put_object(Bucket=xcomsim_env.bucket, Key=f"xcom/{_orphan(0)}", Body=b"x")
    url = xcomsim_env.engine.url.render_as_string(hide_password=False)  # a server DB: the CLI connects to it
    if xcomsim_env.engine.dialect.name == "sqlite":  # in memory: the CLI opens its own connection, give it a file copy
        db_file = tmp_path / "metadata.db"
        with xcomsim_env.engine.connect() as conn:
            target = sqlite3.connect(db_file)
            conn.connection.driver_connection.backup(target)
            target.close()
        url = f"sqlite:///{db_file}"
    args = ["gc", "--path", f"s3://aws_default@{xcomsim_env.bucket}/xcom", "--sql-alchemy-conn", url]

    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete 1 orphan value(s)" in out and _orphan(0) in out
    assert main(args) == 0
    assert "deleted 1 orphan value(s)" in capsys.readouterr().out
    assert _keys(xcomsim_env, f"xcom/{_orphan(0)}") == []


def test_cli_gc_without_a_store_says_what_to_set(capsys, monkeypatch):
    monkeypatch.delenv("AIRFLOW__XCOMSIM__XCOM_OBJECTSTORAGE_PATH", raising=False)
    assert main(["gc", "--dry-run", "--sql-alchemy-conn", "sqlite://"]) == 2
    assert "set [xcomsim] xcom_objectstorage_path" in capsys.readouterr().err


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000,
                             "xcomsim.xcom_objectstorage_path": "redis://redis_default/xcom"})  # fmt: skip
def test_on_redis_an_orphans_age_is_its_guards_and_young_orphans_stay(run_dag, xcomsim_env):
    from sqlalchemy import text

    run_dag(gc_dag)
    with xcomsim_env.engine.begin() as conn:
        conn.execute(text("DELETE FROM xcom"))  # as a UI delete or `airflow db clean`: no purge
    path = "redis://redis_default/xcom"

    young = sweep(path, xcomsim_env.engine, dry_run=False)  # the default grace: an hour
    assert young.orphan_values == [] and len(young.young) == 1, young.describe()
    assert len(list(xcomsim_env.redis.scan_iter("xcom/values/*"))) == 1

    old = sweep(path, xcomsim_env.engine, dry_run=False, grace_seconds=0)
    assert len(old.orphan_values) == 1, old.describe()
    assert list(xcomsim_env.redis.scan_iter("xcom/values/*")) == []
