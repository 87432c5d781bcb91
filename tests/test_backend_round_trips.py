"""What a push costs in store requests, where the guards live, and clients a task process inherits.

On a Celery deployment each store request of a push is a network round trip and client CPU in the task process
(docs/soak.md: the throughput table). A push takes its guard (create-if-absent), uploads an offloaded value,
marks the guard ``writing`` right before its row (compare-and-swap on the version it wrote: no read first), and
reads the guard once after its row. With ``[xcomsim] guard_path`` the guards live in Redis and S3 sees only the
values.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime

import pytest

from airflow.sdk import DAG, task
from xcomsim.backend import XComPolicy, stores
from xcomsim.backend.config import load
from xcomsim.backend.errors import XComPolicyError, XComStoreError
from xcomsim.backend.gc import sweep

OFFLOAD = {"xcomsim.xcom_objectstorage_threshold": 1000}
REDIS_GUARDS = {**OFFLOAD, "xcomsim.guard_path": "redis://redis_default/xcom"}

with DAG("round_trips", start_date=datetime(2024, 1, 1), schedule=None) as round_trips:

    @task(do_xcom_push=False)
    def pusher(ti=None):
        ti.xcom_push(key="small", value="s" * 100)  # inline
        ti.xcom_push(key="large", value="l" * 5000)  # offloaded

    @task(do_xcom_push=False)
    def reader(ti=None):
        assert ti.xcom_pull(task_ids="pusher", key="small") == "s" * 100
        assert ti.xcom_pull(task_ids="pusher", key="large") == "l" * 5000

    pusher() >> reader()

XComPolicy(pushes={"pusher": ["small", "large"]}, pulls={"reader": {"pusher": ["small", "large"]}}).attach(round_trips)


with DAG("round_trips_twice", start_date=datetime(2024, 1, 1), schedule=None) as twice:

    @task(do_xcom_push=False)
    def again(ti=None):
        ti.xcom_push(key="k", value="first" * 300)
        try:
            ti.xcom_push(key="k", value="second" * 300)
        except Exception as exc:  # noqa: BLE001
            ti.xcom_push(key="why", value=type(exc).__name__)

    again()

XComPolicy(pushes={"again": ["k", "why"]}).attach(twice)


@pytest.fixture
def requests(monkeypatch):
    """Every store request of the run, as (store kind, action, what kind of object)."""
    seen: Counter[tuple[str, str, str]] = Counter()

    def counting(kind, real):
        def call(self, action, name, *args, **kwargs):
            what = "guard" if str(name).startswith("guards/") else "value"
            seen[(kind, action + ("-if" if kwargs.get("IfMatch") or kwargs.get("IfNoneMatch") else ""), what)] += 1
            return real(self, action, name, *args, **kwargs)

        return call

    monkeypatch.setattr(stores.S3ObjectStore, "_call", counting("s3", stores.S3ObjectStore._call))
    monkeypatch.setattr(stores.RedisObjectStore, "_call", counting("redis", stores.RedisObjectStore._call))
    return seen


def _pushes_only(seen: Counter) -> Counter:
    return Counter({k: v for k, v in seen.items() if not (k[1] == "get_object" and k[2] == "value")})


@pytest.mark.xcomsim(config=OFFLOAD)
def test_a_push_is_three_guard_requests_and_its_upload(run_dag, requests):
    result = run_dag(round_trips)
    assert result.succeeded, result.describe()
    assert _pushes_only(requests) == Counter({
        ("s3", "put_object-if", "guard"): 4,  # per push: the create, and the fence's swap on the version it wrote
        ("s3", "get_object", "guard"): 2,  # per push: the read after its row
        ("s3", "put_object", "value"): 1,  # the offloaded value
    })  # fmt: skip


@pytest.mark.xcomsim(config=REDIS_GUARDS)
def test_with_guard_path_the_guards_live_in_redis_and_s3_sees_only_values(run_dag, requests, xcomsim_env):
    result = run_dag(round_trips)
    assert result.succeeded, result.describe()
    s3 = Counter({k: v for k, v in _pushes_only(requests).items() if k[0] == "s3"})
    assert s3 == Counter({("s3", "put_object", "value"): 1})
    keys = {o["Key"] for o in xcomsim_env.s3.list_objects_v2(Bucket=xcomsim_env.bucket).get("Contents", [])}
    assert [k for k in keys if "/guards/" in k] == [] and len([k for k in keys if "/values/" in k]) == 1
    guards = [json.loads(xcomsim_env.redis.get(k)) for k in xcomsim_env.redis.scan_iter("xcom/guards/*")]
    assert sorted((g["key"], g["state"]) for g in guards) == [("large", "writing"), ("small", "writing")]
    assert not any("stamped_at" in g for g in guards)  # the values' ages are S3's: no Redis TIME a push
    assert s3 + Counter({k: v for k, v in _pushes_only(requests).items() if k[0] == "redis"}) == Counter({
        ("s3", "put_object", "value"): 1, ("redis", "set", "guard"): 2, ("redis", "eval", "guard"): 2,
        ("redis", "get", "guard"): 2})  # fmt: skip


@pytest.mark.xcomsim(config=REDIS_GUARDS)
def test_with_guard_path_a_second_push_is_refused_and_gc_finds_guards_in_redis(run_dag, xcomsim_env):
    from sqlalchemy import text

    result = run_dag(twice)
    assert result.succeeded, result.describe()
    assert result.xcom("again", "k") == "first" * 300
    assert result.xcom("again", "why") == "XComOverwriteError"

    with xcomsim_env.engine.begin() as conn:  # the run is deleted: its guards are stale, its object an orphan
        conn.execute(text("DELETE FROM xcom"))
        conn.execute(text("DELETE FROM dag_run WHERE dag_id = 'round_trips_twice'"))
    report = sweep(load().path, xcomsim_env.engine, dry_run=False, grace_seconds=0)
    assert len(report.stale_guards) == 2 and len(report.orphan_values) == 1, report.describe()
    assert list(xcomsim_env.redis.scan_iter("xcom/guards/*")) == []


def test_guard_path_must_be_a_redis_store(monkeypatch):
    monkeypatch.setenv("AIRFLOW__XCOMSIM__GUARD_PATH", "s3://aws_default@bucket/guards")
    with pytest.raises(XComPolicyError, match=r"guard_path=.*use redis://CONN_ID/PREFIX"):
        load()


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python 3.12+: fork in a threaded process
def test_a_task_process_forked_after_warm_inherits_the_stores_clients(monkeypatch):
    """The Celery worker builds the configured stores' clients before it forks: a task builds none."""
    conn = {"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": "http://127.0.0.1:9"}}
    monkeypatch.setenv("AIRFLOW_CONN_XCOMSIM_INHERIT_TEST", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_XCOMSIM_INHERIT_REDIS", "redis://127.0.0.1:9/0")
    paths = ("s3://xcomsim_inherit_test@bucket/xcom", "redis://xcomsim_inherit_redis/xcom")
    stores.clear_client_cache()
    try:
        assert stores.warm_clients(paths) == list(paths)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the task process
            built: list[str] = []
            try:
                for name in ("_make_s3_client", "_make_redis_client"):
                    setattr(stores, name, lambda conn_id, name=name: built.append(name))
                for path in paths:
                    stores.open_store(path)._client()
                os.write(write, json.dumps(built).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as out:
            built = json.loads(out.read() or '["child failed"]')
        os.waitpid(pid, 0)
        assert built == []
        assert stores.warm_clients(("s3://xcomsim_no_such_conn@bucket/x",)) == []  # unresolvable: left to the task
    finally:
        stores.clear_client_cache()


def test_the_rehearsed_upload_sends_nothing_and_leaves_the_client_as_it_was(monkeypatch):
    """warm's rehearsal goes through the whole request path but is answered in the process: the endpoint (a
    closed port) is never reached, and afterwards an upload reaches it again (and fails there)."""
    conn = {"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": "http://127.0.0.1:9"}}
    monkeypatch.setenv("AIRFLOW_CONN_XCOMSIM_REHEARSE_TEST", json.dumps(conn))
    path = "s3://xcomsim_rehearse_test@bucket/xcom"
    stores.clear_client_cache()
    rehearsed: list[str] = []
    original = stores.S3ObjectStore.rehearse
    monkeypatch.setattr(stores.S3ObjectStore, "rehearse", lambda self: (rehearsed.append(str(self.location)),
                                                                        original(self))[1])  # fmt: skip
    try:
        assert stores.warm_clients((path,)) == [path] and rehearsed == ["s3://xcomsim_rehearse_test@bucket/xcom"]
        store = stores.open_store(path)
        events = store._client().meta.events
        assert not [h for h in events._emitter._unique_id_handlers if "xcomsim-rehearsal" in h], "left registered"
        with pytest.raises(XComStoreError, match="unreachable during put_object"):
            store.put("after", b"x")
    finally:
        stores.clear_client_cache()


SMALL_VALUES_IN_REDIS = {**REDIS_GUARDS, "xcomsim.guard_path_values_below": 4000}

with DAG("round_trips_tiers", start_date=datetime(2024, 1, 1), schedule=None) as tiers:

    @task(do_xcom_push=False)
    def tiered(ti=None):
        ti.xcom_push(key="small", value="s" * 100)  # inline
        ti.xcom_push(key="medium", value="m" * 2000)  # offloaded, below 4000 bytes: with the guards, in Redis
        ti.xcom_push(key="large", value="l" * 5000)  # offloaded, 4000 bytes or more: in S3

    @task(do_xcom_push=False)
    def tier_reader(ti=None):
        assert ti.xcom_pull(task_ids="tiered", key="medium") == "m" * 2000
        assert ti.xcom_pull(task_ids="tiered", key="large") == "l" * 5000

    tiered() >> tier_reader()

XComPolicy(pushes={"tiered": ["small", "medium", "large"]},
           pulls={"tier_reader": {"tiered": ["medium", "large"]}}).attach(tiers)  # fmt: skip


@pytest.mark.xcomsim(config=SMALL_VALUES_IN_REDIS)
def test_small_offloaded_values_live_with_the_guards_and_large_ones_in_s3(run_dag, requests, xcomsim_env):
    from sqlalchemy import text

    result = run_dag(tiers)
    assert result.succeeded, result.describe()
    s3_values = [o["Key"] for o in xcomsim_env.s3.list_objects_v2(Bucket=xcomsim_env.bucket).get("Contents", [])]
    redis_values = list(xcomsim_env.redis.scan_iter("xcom/values/*"))
    assert len(s3_values) == 1 and len(redis_values) == 1, (s3_values, redis_values)
    assert xcomsim_env.redis.get(redis_values[0]) is not None
    assert requests[("s3", "put_object", "value")] == 1 and requests[("redis", "set", "value")] == 1
    # the Redis value's age for gc: its guard carries a stamp of Redis's clock (S3 keeps the large one's)
    stamped = {g["key"]: "stamped_at" in g for g in map(json.loads, map(xcomsim_env.redis.get,
                                                                      xcomsim_env.redis.scan_iter("xcom/guards/*")))}  # fmt: skip
    assert stamped == {"small": False, "medium": True, "large": False}

    with xcomsim_env.engine.begin() as conn:  # the run is deleted: both objects are orphans, each in its store
        conn.execute(text("DELETE FROM xcom WHERE dag_id = 'round_trips_tiers'"))
        conn.execute(text("DELETE FROM dag_run WHERE dag_id = 'round_trips_tiers'"))
    config = load()
    assert config.value_paths == (config.guard_path, config.path)  # the guards' store first: its values' ages
    reports = [sweep(path, xcomsim_env.engine, dry_run=False, grace_seconds=0) for path in config.value_paths]
    assert [len(r.orphan_values) for r in reports] == [1, 1], [r.describe() for r in reports]
    assert list(xcomsim_env.redis.scan_iter("xcom/values/*")) == []


@pytest.mark.xcomsim(config=SMALL_VALUES_IN_REDIS)
def test_a_reference_into_neither_configured_store_is_refused(xcomsim_env):
    from xcomsim.backend import codec
    from xcomsim.backend.pull import fetch

    name = codec.object_name("d", "r", "t", -1, "k", attempt=1)
    xcomsim_env.redis.set("other/" + name, b"forged")
    forged = codec.Reference("redis://redis_default/other", name, codec.digest(b"forged"), 6, "").to_uri()
    with pytest.raises(XComStoreError, match="outside this backend's store"):
        fetch(forged, None)


def test_small_values_need_a_guard_path_a_whole_number_and_a_threshold_under_it(monkeypatch):
    monkeypatch.setenv("AIRFLOW__XCOMSIM__XCOM_OBJECTSTORAGE_PATH", "s3://aws_default@bucket/xcom")
    monkeypatch.setenv("AIRFLOW__XCOMSIM__GUARD_PATH_VALUES_BELOW", "65536")
    with pytest.raises(XComPolicyError, match=r"guard_path_values_below=65536 would keep no value with the guards: "
                                              r"only values of xcom_objectstorage_threshold=1048576 bytes"):  # fmt: skip
        load()  # the default threshold: 1 MiB
    monkeypatch.setenv("AIRFLOW__XCOMSIM__XCOM_OBJECTSTORAGE_THRESHOLD", "1024")
    with pytest.raises(XComPolicyError, match=r"guard_path_values_below=65536 needs a guard_path"):
        load()
    monkeypatch.setenv("AIRFLOW__XCOMSIM__GUARD_PATH", "redis://redis_default/xcom")
    monkeypatch.setenv("AIRFLOW__XCOMSIM__GUARD_PATH_VALUES_BELOW", "64k")
    with pytest.raises(XComPolicyError, match=r"guard_path_values_below='64k' is not a whole number of bytes"):
        load()
    monkeypatch.setenv("AIRFLOW__XCOMSIM__GUARD_PATH_VALUES_BELOW", "-1")
    with pytest.raises(XComPolicyError, match=r"guard_path_values_below=-1; use 0 or more"):
        load()



with DAG("round_trips_tier_retry", start_date=datetime(2024, 1, 1), schedule=None) as tier_retry:

    @task(do_xcom_push=False, retries=1)
    def grows(ti=None):
        """Try 1 pushes a value small enough for Redis and fails; try 2 pushes one for S3."""
        ti.xcom_push(key="v", value="m" * (2000 if ti.try_number == 1 else 5000))
        if ti.try_number == 1:
            raise RuntimeError("fail after the push")

    grows()

XComPolicy(pushes={"grows": ["v"]}).attach(tier_retry)


@pytest.mark.xcomsim(config=SMALL_VALUES_IN_REDIS)
def test_a_retry_whose_value_moves_to_s3_deletes_the_earlier_object_in_redis(run_dag, xcomsim_env):
    result = run_dag(tier_retry)
    assert result.succeeded, result.describe()
    assert result.xcom("grows", "v") == "m" * 5000
    assert list(xcomsim_env.redis.scan_iter("xcom/values/*")) == []  # try 1's object, deleted in its own store
    s3 = [o["Key"] for o in xcomsim_env.s3.list_objects_v2(Bucket=xcomsim_env.bucket).get("Contents", [])]
    assert len([k for k in s3 if "/values/" in k]) == 1
    (guard,) = [json.loads(xcomsim_env.redis.get(k)) for k in xcomsim_env.redis.scan_iter("xcom/guards/*")]
    assert "stamped_at" in guard  # try 1's stamp stays: had its delete failed, gc could still age its object


@pytest.mark.xcomsim(config=SMALL_VALUES_IN_REDIS)
def test_gc_keeps_a_guard_while_its_young_redis_value_is_kept(run_dag, xcomsim_env):
    """A run deleted right after its push: its Redis value is too young to go, so its guard (the value's only
    age) must stay too, whichever store is swept; once old enough both go."""
    from sqlalchemy import text

    assert run_dag(tiers).succeeded
    with xcomsim_env.engine.begin() as conn:
        conn.execute(text("DELETE FROM xcom WHERE dag_id = 'round_trips_tiers'"))
        conn.execute(text("DELETE FROM dag_run WHERE dag_id = 'round_trips_tiers'"))
    config = load()
    young = [sweep(path, xcomsim_env.engine, dry_run=False) for path in (config.path, config.guard_path)]
    assert [r.orphan_values for r in young] == [[], []]  # an hour's grace: nothing is old enough
    kept = [json.loads(xcomsim_env.redis.get(k))["key"] for k in xcomsim_env.redis.scan_iter("xcom/guards/*")]
    assert kept == ["medium"]  # the Redis value's guard stays; the others may go (S3 keeps its values' ages)
    old = [sweep(path, xcomsim_env.engine, dry_run=False, grace_seconds=0) for path in config.value_paths]
    assert sum(len(r.orphan_values) for r in old) == 2
    assert list(xcomsim_env.redis.scan_iter("xcom/*")) == []
