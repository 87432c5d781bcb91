"""Offload: at/above the threshold the value lives in S3 or Redis and the row holds a bounded reference."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, task
from xcomsim.backend import XComPolicy
from xcomsim.backend.codec import encode, is_reference
from xcomsim.backend.gc import sweep
from xcomsim.conformance import same

THRESHOLD = 2000
STORES = {
    "s3": {"xcomsim.xcom_objectstorage_threshold": THRESHOLD},
    "redis": {
        "xcomsim.xcom_objectstorage_threshold": THRESHOLD,
        "xcomsim.xcom_objectstorage_path": "redis://redis_default/xcom",
    },
}


def _string_of_size(size: int) -> str:
    """A str whose serialised (JSON) form is exactly ``size`` bytes: the quotes count."""
    value = "x" * (size - 2)
    assert encode(value, key="k", task_id="t").size == size
    return value


with DAG("offload_sizes", start_date=datetime(2024, 1, 1), schedule=None) as sizes_dag:

    @task
    def push_sizes(**context):
        for label, size in (("below", THRESHOLD - 1), ("at", THRESHOLD), ("above", THRESHOLD + 1)):
            context["ti"].xcom_push(key=label, value=_string_of_size(size))

    push_sizes()

XComPolicy(pushes={"push_sizes": ["below", "at", "above"]}).attach(sizes_dag)


def _objects(env) -> list[str]:
    s3 = [o["Key"] for o in env.s3.list_objects_v2(Bucket=env.bucket).get("Contents", [])]
    return sorted(s3 + [k.decode() for k in env.redis.keys("*")])


@pytest.mark.parametrize("store", sorted(STORES))
def test_threshold_boundaries_measured_on_the_serialised_form(xcomsim_env, store):
    xcomsim_env.set_config(STORES[store])
    result = xcomsim_env.run_dag(sizes_dag)

    assert result.succeeded, result.describe()
    stored = {key: result.record("push_sizes", key).stored for key in ("below", "at", "above")}
    assert not is_reference(stored["below"])
    assert is_reference(stored["at"]) and is_reference(stored["above"])
    assert stored["at"].startswith(f"xcomsim+{store}://")
    assert all(len(stored[k]) <= 1024 for k in ("at", "above"))
    for key, size in (("below", THRESHOLD - 1), ("at", THRESHOLD), ("above", THRESHOLD + 1)):
        assert len(result.xcom("push_sizes", key)) == size - 2
    values = [o for o in _objects(xcomsim_env) if "/values/" in o]
    assert len(values) == 2


ROUND_TRIP = {
    "nested": {"a": [1, {"b": (2, 3)}], "c": {"d": None, "e": True}},
    "tuple": (1, "two", 3.0),
    "set": {1, 2, 3},
    "unicode": "naïve – 日本語 – 🦄𝔘𝔫𝔦𝔠𝔬𝔡𝔢 – \u0000 nul",
    "big_int": 2**200 + 1,
    "negative_big_int": -(10**40),
    "floats": [0.1, -0.0, 1e308, float("inf"), float("-inf")],
    "bools_none": [True, False, None],
    "datetime": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=timezone.utc),
    "empty": {"list": [], "dict": {}, "str": ""},
}

with DAG("round_trip", start_date=datetime(2024, 1, 1), schedule=None) as round_trip_dag:

    @task
    def push_all(**context):
        for key, value in ROUND_TRIP.items():
            context["ti"].xcom_push(key=key, value=value)

    @task
    def pull_all(**context):
        pulled = {key: context["ti"].xcom_pull(task_ids="push_all", key=key) for key in ROUND_TRIP}
        mismatched = [k for k, v in pulled.items() if not same(v, ROUND_TRIP[k])]
        assert not mismatched, f"changed in the round trip: {mismatched}"
        return sorted(pulled)

    push_all() >> pull_all()

XComPolicy(
    pushes={"push_all": list(ROUND_TRIP), "pull_all": ["return_value"]},
    pulls={"pull_all": {"push_all": list(ROUND_TRIP)}},
).attach(round_trip_dag)


@pytest.mark.parametrize(
    "config",
    [
        {"xcomsim.xcom_objectstorage_threshold": -1},
        {"xcomsim.xcom_objectstorage_threshold": 0},
        {"xcomsim.xcom_objectstorage_threshold": 0, "xcomsim.xcom_objectstorage_compression": "gzip"},
        {"xcomsim.xcom_objectstorage_threshold": 0, "xcomsim.xcom_objectstorage_path": "redis://redis_default/x"},
    ],
    ids=["inline", "s3", "s3-gzip", "redis"],
)
def test_round_trip_is_exact_for_every_serde_kind(xcomsim_env, config):
    xcomsim_env.set_config(config)
    result = xcomsim_env.run_dag(round_trip_dag)

    assert result.succeeded, result.describe()
    for key, value in ROUND_TRIP.items():
        assert same(result.xcom("push_all", key), value), key
    offloaded = [is_reference(result.record("push_all", k).stored) for k in ROUND_TRIP]
    assert all(offloaded) if config["xcomsim.xcom_objectstorage_threshold"] == 0 else not any(offloaded)


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 0, "xcomsim.xcom_objectstorage_compression": "gzip"})
def test_compression_shrinks_the_object(run_dag, xcomsim_env):
    result = run_dag(sizes_dag)
    ref = result.record("push_sizes", "above").stored
    key = "xcom/" + ref.split("/xcom/", 1)[1].split("?", 1)[0]
    body = xcomsim_env.s3.get_object(Bucket=xcomsim_env.bucket, Key=key)["Body"].read()
    assert len(body) < 100 < THRESHOLD
    assert "codec=gzip" in ref and f"size={THRESHOLD + 1}" in ref


def _fail_until_last(ti, **_):
    ti.xcom_push(key="blob", value={"try": ti.try_number, "data": "y" * 5000})
    if ti.try_number < RERUNS:
        raise RuntimeError("not yet")


RERUNS = 100

with DAG("many_reruns", start_date=datetime(2024, 1, 1), schedule=None) as reruns_dag:
    PythonOperator(task_id="retried", python_callable=_fail_until_last, retries=RERUNS)

XComPolicy(pushes={"retried": ["blob"]}, retry_replaces=True).attach(reruns_dag)


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000})
def test_a_hundred_reruns_leave_one_object_and_no_orphan(run_dag, xcomsim_env):
    result = run_dag(reruns_dag)

    assert result.succeeded, result.describe()
    assert result.task("retried").try_number == RERUNS
    assert result.xcom("retried", "blob")["try"] == RERUNS
    values = [o for o in _objects(xcomsim_env) if "/values/" in o]
    assert len(values) == 1
    report = sweep(f"s3://aws_default@{xcomsim_env.bucket}/xcom", xcomsim_env.engine, grace_seconds=0)
    assert report.orphan_values == [] and report.referenced == 1


def test_long_coordinates_keep_the_reference_under_1_kib(xcomsim_env):
    from xcomsim.backend.codec import Reference, digest, object_name

    name = object_name("d" * 250, "r" * 250, "t" * 250, 10**6, "k" * 512)
    uri = Reference("s3://aws_default@" + "b" * 63 + "/" + "p" * 200, name, digest(b""), 10**12, "gzip").to_uri()
    assert len(uri) <= 1024
    assert json.dumps(uri)  # JSON-able, as the Execution API needs


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000})
def test_purge_removes_the_object_and_gc_finds_rows_deleted_without_purge(run_dag, xcomsim_env):
    from types import SimpleNamespace

    from sqlalchemy import text

    from airflow.sdk.execution_time.comms import XComResult
    from xcomsim.backend import ExclusiveXCom, XComScopeError

    result = run_dag(reruns_dag)
    path = f"s3://aws_default@{xcomsim_env.bucket}/xcom"
    assert len([o for o in _objects(xcomsim_env) if "/values/" in o]) == 1
    # A UI delete or `airflow db clean` removes the row without calling purge:
    with xcomsim_env.engine.begin() as conn:
        conn.execute(text("DELETE FROM xcom"))
    assert len(sweep(path, xcomsim_env.engine, grace_seconds=0).orphan_values) == 1
    stored = result.record("retried", "blob").stored
    # purge given only key and value (Airflow's XComResult) cannot tell whose object it is: it deletes nothing
    ExclusiveXCom.purge(XComResult(key="blob", value=stored))
    assert len([o for o in _objects(xcomsim_env) if "/values/" in o]) == 1
    # purge given the row with its coordinate, from outside any task: refused (only the owner may), nothing deleted
    row = SimpleNamespace(dag_id="many_reruns", run_id=result.run_id, task_id="retried", map_index=-1, key="blob",
                          value=stored)  # fmt: skip
    with pytest.raises(XComScopeError, match="purge of key 'blob' as task 'retried'.*outside any running task"):
        ExclusiveXCom.purge(row)
    assert len([o for o in _objects(xcomsim_env) if "/values/" in o]) == 1
    sweep(path, xcomsim_env.engine, grace_seconds=0, dry_run=False)  # what deleted rows leave, gc collects
    assert [o for o in _objects(xcomsim_env) if "/values/" in o] == []


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000, "xcomsim.guard_path": "redis://redis_default/xcom",
                             "xcomsim.guard_path_values_below": 65536})  # fmt: skip
def test_reruns_of_a_value_kept_with_the_guards_leave_one_object_there_and_none_in_s3(run_dag, xcomsim_env):
    """Each retry replaces the earlier try's object, which lives in Redis: purge finds it in that store."""
    result = run_dag(reruns_dag)
    assert result.succeeded, result.describe()
    assert result.xcom("retried", "blob")["try"] == RERUNS
    assert xcomsim_env.s3.list_objects_v2(Bucket=xcomsim_env.bucket).get("Contents", []) == []
    assert len(list(xcomsim_env.redis.scan_iter("xcom/values/*"))) == 1
    report = sweep("redis://redis_default/xcom", xcomsim_env.engine, grace_seconds=0)
    assert report.orphan_values == [] and report.referenced == 1
