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


def test_the_embedded_redis_serves_a_connection_as_a_server_would(xcomsim_env):
    """Commands split across writes, many in one write, an error that keeps the connection, a message
    published with nothing sent on the subscriber's connection, and a client that hangs up."""
    import socket
    import time

    import redis

    server = xcomsim_env.simulation.redis
    if not hasattr(server, "_server"):
        import pytest

        pytest.skip("a real redis-server serves its own connections")

    def read_until(sock: socket.socket, wanted: bytes) -> bytes:
        received, deadline = b"", time.monotonic() + 10
        while not received.endswith(wanted):
            assert time.monotonic() < deadline, f"no {wanted!r} after {received!r}"
            chunk = sock.recv(1 << 16)
            assert chunk, f"the server closed after {received!r}"
            received += chunk
        return received

    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        for piece in (b"*3\r\n$3\r\nSET\r\n$1", b"\r\nk\r\n$2\r\nv", b"1\r\n"):  # one command, three writes
            sock.sendall(piece)
            time.sleep(0.02)
        assert read_until(sock, b"+OK\r\n") == b"+OK\r\n"
        sock.sendall(b"*1\r\n$4\r\nPING\r\n*1\r\n$7\r\nNOSUCHC\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")  # three in one
        replies = read_until(sock, b"v1\r\n")
        assert replies.startswith(b"+PONG\r\n-ERR unknown command") and replies.endswith(b"v1\r\n")

    subscriber = redis.Redis(host=server.host, port=server.port, socket_timeout=10).pubsub()
    subscriber.subscribe("news")
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    assert xcomsim_env.redis.publish("news", "hello") == 1
    message = subscriber.get_message(timeout=5)
    assert message is not None and message["data"] == b"hello"  # pushed by the server, nothing asked
    subscriber.close()
    deadline = time.monotonic() + 5  # the hung-up subscriber's connection ends on the server
    while xcomsim_env.redis.pubsub_numsub("news")[0][1] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert xcomsim_env.redis.pubsub_numsub("news")[0][1] == 0


def test_the_embedded_s3_lists_every_object_in_one_request_as_list_objects_v2_does(xcomsim_env):
    """The kit lists the stores between steps; on the embedded S3 one request to the child gives what a
    ListBuckets and a paginated ListObjectsV2 per bucket give: odd keys, empty objects, each key's latest
    version, no delete markers, no unfinished multipart uploads."""
    import pytest

    from xcomsim.env.s3_store import S3Store

    if not isinstance(xcomsim_env.simulation.s3, S3Store):
        pytest.skip("a shared endpoint is listed through its API, bucket by bucket")
    s3 = xcomsim_env.s3
    for bucket in ("other-bucket", "versioned-bucket"):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket="versioned-bucket", VersioningConfiguration={"Status": "Enabled"})
    for key, body in [("a b/ü %2F?x", b"1"), ("empty", b""), ("deep/" * 20 + "leaf", b"xyz")]:
        s3.put_object(Bucket=xcomsim_env.bucket, Key=key, Body=body)
    for n in range(1005):  # past one page of ListObjectsV2
        s3.put_object(Bucket="other-bucket", Key=f"k{n:04d}", Body=b"v" * (n % 7))
    s3.put_object(Bucket="versioned-bucket", Key="rewritten", Body=b"first, longer")
    s3.put_object(Bucket="versioned-bucket", Key="rewritten", Body=b"second")
    s3.put_object(Bucket="versioned-bucket", Key="deleted", Body=b"gone")
    s3.delete_object(Bucket="versioned-bucket", Key="deleted")  # a delete marker on top
    s3.create_multipart_upload(Bucket="versioned-bucket", Key="unfinished")

    listed = {}
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            listed.update({f"s3://{bucket}/{o['Key']}": o["Size"] for o in page.get("Contents", [])})
    assert xcomsim_env.simulation.s3.objects() == listed
    assert listed["s3://versioned-bucket/rewritten"] == len(b"second") and len(listed) == 1005 + 4


def test_the_embedded_s3_applies_a_conditional_create_atomically_as_s3_does(xcomsim_env):
    """Many threads create one key with If-None-Match: * at once: exactly one succeeds, round after round, as
    on S3, where push-once guards rely on it (moto checks the condition and then writes; the embedded server
    runs one write at a time, since under load two creates of one key both landed in a scenario's race)."""
    import threading

    from botocore.exceptions import ClientError

    s3 = xcomsim_env.s3
    s3.put_object(Bucket=xcomsim_env.bucket, Key="warm", Body=b"")
    for round_ in range(20):
        start, wins, lock = threading.Barrier(8), [], threading.Lock()

        def create(n: int) -> None:
            start.wait()
            try:
                s3.put_object(Bucket=xcomsim_env.bucket, Key=f"guard-{round_}", Body=str(n).encode() * 100_000, IfNoneMatch="*")
            except ClientError as exc:
                assert exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"), exc
            else:
                with lock:
                    wins.append(n)

        threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(wins) == 1, f"round {round_}: {len(wins)} conditional creates of one key succeeded: {wins}"
        stored = s3.get_object(Bucket=xcomsim_env.bucket, Key=f"guard-{round_}")["Body"].read()
        assert stored == str(wins[0]).encode() * 100_000
