"""Bad input: a clear error naming the cause, and nothing half-written (no row, no object, no guard)."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow.sdk import DAG, task
from xcomsim.backend import XComPolicy, XComPolicyError, XComStoreError, XComValueError


def _single_push_dag(dag_id: str, key: str, make_value, declare: bool = True):
    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def pusher(**context):
            context["ti"].xcom_push(key=key, value=make_value())

        pusher()
    if declare:
        XComPolicy(pushes={"pusher": [key]}).attach(dag)
    return dag


def _store_contents(env) -> list[str]:
    s3 = [o["Key"] for o in env.s3.list_objects_v2(Bucket=env.bucket).get("Contents", [])]
    return s3 + [k.decode() for k in env.redis.keys("*")]


def _assert_nothing_written(env, result, error_type, *fragments):
    error = result.error("pusher")
    assert isinstance(error, error_type), result.describe()
    for fragment in fragments:
        assert fragment in str(error)
    assert env.xcom_rows() == []
    assert _store_contents(env) == []


class Opaque:
    pass


NOT_SERIALISABLE = _single_push_dag("bad_value", "obj", Opaque)
LONG_KEY = "k" * 513
TOO_LONG = _single_push_dag("bad_key", LONG_KEY, lambda: 1, declare=False)  # a policy would refuse it first
BIG = _single_push_dag("big_value", "big", lambda: "z" * 10_000)


def test_non_serialisable_value(run_dag, xcomsim_env):
    result = run_dag(NOT_SERIALISABLE)
    _assert_nothing_written(xcomsim_env, result, XComValueError, "key 'obj'", "Opaque", "cannot be serialised")


def test_key_longer_than_airflow_allows(run_dag, xcomsim_env):
    result = run_dag(TOO_LONG)
    _assert_nothing_written(xcomsim_env, result, XComValueError, "513 chars", "holds 512")


@pytest.mark.xcomsim(
    config={"xcomsim.xcom_objectstorage_threshold": 0, "xcomsim.xcom_objectstorage_path": "s3://aws_default@no-such-bucket/x"}
)
def test_missing_bucket(run_dag, xcomsim_env):
    result = run_dag(BIG)
    _assert_nothing_written(xcomsim_env, result, XComStoreError, "bucket 'no-such-bucket' does not exist")


@pytest.mark.xcomsim(
    config={"xcomsim.xcom_objectstorage_threshold": 0, "xcomsim.xcom_objectstorage_path": "redis://redis_down/x"}
)
def test_redis_unreachable(run_dag, xcomsim_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_DOWN", "redis://127.0.0.1:1/0")
    result = run_dag(BIG)
    _assert_nothing_written(xcomsim_env, result, XComStoreError, "Redis store redis://redis_down/x unreachable")


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_path": ""})
def test_no_store_configured(run_dag, xcomsim_env):
    result = run_dag(BIG)
    _assert_nothing_written(xcomsim_env, result, XComStoreError, "set [xcomsim] xcom_objectstorage_path")


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": "lots"})
def test_malformed_threshold(run_dag, xcomsim_env):
    result = run_dag(BIG)
    _assert_nothing_written(xcomsim_env, result, XComPolicyError, "xcom_objectstorage_threshold='lots'")


with DAG("dangling", start_date=datetime(2024, 1, 1), schedule=None) as dangling_dag:

    @task
    def produce():
        return "w" * 5000

    @task
    def sabotage(dag_run=None):
        import boto3

        s3, bucket = boto3.client("s3"), dag_run.conf["bucket"]  # the test's own on a shared endpoint
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix="xcom/values/").get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])

    @task
    def consume(value):
        return len(value)

    value = produce()
    sabotage() >> consume(value)
    value >> sabotage()

XComPolicy(pushes={"produce": ["return_value"], "consume": ["return_value"], "sabotage": []}).attach(dangling_dag)


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000})
def test_reference_to_missing_object(run_dag, xcomsim_env):
    result = run_dag(dangling_dag, conf={"bucket": xcomsim_env.bucket})

    error = result.error("consume")
    assert isinstance(error, XComStoreError), result.describe()
    assert f"object s3://aws_default@{xcomsim_env.bucket}/xcom/values/" in str(error)
    assert "is missing" in str(error)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (dict(pushes=["a"]), "pushes must be a mapping"),
        (dict(pushes={"a": "k"}), "must be a list of keys"),
        (dict(pushes={"a": [""]}), "invalid key(s) ['']"),
        (dict(pushes={"a": ["k" * 513]}), "invalid key(s) ['kkkkkkkkkk...' (513 chars)]"),
        (dict(pushes={"": ["k"]}), "task ids must be non-empty strings"),
        (dict(pushes={}, pulls={"a": ["k"]}), "pulls['a'] must be a mapping"),
        (dict(pushes={}, retry_replaces="yes"), "retry_replaces must be True or False"),
    ],
)
def test_malformed_policy(policy, message):
    with pytest.raises(XComPolicyError) as excinfo:
        XComPolicy(**policy)
    assert message in str(excinfo.value)


def test_policy_naming_a_missing_task_fails_at_parse_time(tmp_path):
    (tmp_path / "typo_dag.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG, task\n"
        "from xcomsim.backend import XComPolicy\n"
        "with DAG('typo_dag', start_date=datetime(2024, 1, 1), schedule=None) as dag:\n"
        "    @task\n"
        "    def extract():\n"
        "        return 1\n"
        "    extract()\n"
        "XComPolicy(pushes={'extract': ['return_value'], 'extarct': ['rows']}).attach(dag)\n"
    )
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(tmp_path))
    (error,) = bag.import_errors.values()
    assert "XComPolicyError" in error
    assert "names task(s) ['extarct'] that the DAG does not have" in error
    assert "typo_dag" not in bag.dags


with DAG("api_down", start_date=datetime(2024, 1, 1), schedule=None) as api_down_dag:

    @task
    def pusher(**context):
        from airflow.sdk.execution_time import task_runner

        real = task_runner.SUPERVISOR_COMMS

        class RowWriteFails:
            def send(self, msg):
                if type(msg).__name__ == "SetXCom":
                    raise ConnectionError("Execution API unreachable while writing the row")
                return real.send(msg)

        task_runner.SUPERVISOR_COMMS = RowWriteFails()
        try:
            context["ti"].xcom_push(key="big", value="b" * 5000)
        finally:
            task_runner.SUPERVISOR_COMMS = real

    pusher()

XComPolicy(pushes={"pusher": ["big"]}).attach(api_down_dag)


@pytest.mark.xcomsim(config={"xcomsim.xcom_objectstorage_threshold": 1000})
def test_row_write_failure_leaves_no_object_and_no_guard(run_dag, xcomsim_env):
    result = run_dag(api_down_dag)
    _assert_nothing_written(xcomsim_env, result, ConnectionError, "Execution API unreachable")
