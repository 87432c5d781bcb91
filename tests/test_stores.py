"""Code that finds its stores the Airflow way reaches the test's fakes, from inside a running task."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

with DAG("store_routing", start_date=datetime(2024, 1, 1), schedule=None) as routing_dag:

    # The test's bucket arrives as dag_run.conf: on a shared S3 endpoint every test has its own.
    @task
    def through_hooks(dag_run=None):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.providers.redis.hooks.redis import RedisHook

        RedisHook(redis_conn_id="redis_default").get_conn().set("via:hook", "redis-hook")
        S3Hook(aws_conn_id="aws_default").load_string("s3-hook", key="via/hook", bucket_name=dag_run.conf["bucket"])

    @task
    def through_plain_clients(dag_run=None):
        import boto3
        import redis

        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection("redis_default")
        db = int(conn.extra_dejson.get("db", 0))  # on a shared Redis the test owns one DB index
        redis.Redis(host=conn.host, port=conn.port, db=db, password=conn.password).set("via:plain", "redis-py")
        boto3.client("s3").put_object(Bucket=dag_run.conf["bucket"], Key="via/plain", Body=b"boto3")

    @task
    def through_object_storage(dag_run=None):
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(f"s3://aws_default@{dag_run.conf['bucket']}/via/objectstorage")
        path.write_text("object-storage")
        return path.read_text()

    through_hooks() >> through_plain_clients() >> through_object_storage()


def test_hooks_plain_clients_and_object_storage_reach_the_fakes(run_dag, xcomsim_env):
    result = run_dag(routing_dag, conf={"bucket": xcomsim_env.bucket})

    assert result.succeeded, result.describe()
    assert xcomsim_env.redis.get("via:hook") == b"redis-hook"
    assert xcomsim_env.redis.get("via:plain") == b"redis-py"
    bodies = {
        key: xcomsim_env.s3.get_object(Bucket=xcomsim_env.bucket, Key=key)["Body"].read()
        for key in ("via/hook", "via/plain", "via/objectstorage")
    }
    assert bodies == {"via/hook": b"s3-hook", "via/plain": b"boto3", "via/objectstorage": b"object-storage"}
    assert result.xcom("through_object_storage") == "object-storage"


def test_the_exposed_clients_are_ready(xcomsim_env):
    assert xcomsim_env.redis.ping()
    buckets = [b["Name"] for b in xcomsim_env.s3.list_buckets()["Buckets"]]
    assert xcomsim_env.bucket in buckets  # a shared S3 endpoint holds other tests' buckets too


def test_the_embedded_redis_sends_a_large_reply_whole_to_a_slow_client(xcomsim_env):
    """A 16 MiB value read by a client that waits before reading: the reply arrives whole (fakeredis alone
    sent it on a non-blocking socket and failed half-way with BlockingIOError)."""
    import socket
    import time

    server = xcomsim_env.simulation.redis
    if not hasattr(server, "_server"):
        import pytest

        pytest.skip("a real redis-server sends its own replies")
    value = b"x" * (16 * 1024 * 1024)
    xcomsim_env.redis.set("big", value)
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
        time.sleep(0.5)  # the server fills the socket buffer and must wait, not fail
        whole = {b"+" + value + b"\r\n", b"$%d\r\n" % len(value) + value + b"\r\n"}  # simple or bulk string
        received = bytearray()
        while len(received) < len(value) or not received.endswith(b"\r\n"):
            chunk = sock.recv(1 << 20)
            assert chunk, f"the server closed after {len(received)} bytes: {bytes(received[:80])!r}"
            received += chunk
    assert bytes(received) in whole
