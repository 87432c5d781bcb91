"""The embedded servers' child processes: they serve at once, fail loudly, and never outlive the session."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pytest
import redis

from xcomsim.env.child_server import ChildServer
from xcomsim.env.redis_store import RedisStore
from xcomsim.env.s3_store import S3Store
from xcomsim.errors import ServiceError


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_a_child_that_cannot_serve_is_an_error_naming_it_and_its_output():
    server = ChildServer("no-such-server")
    with pytest.raises(ServiceError, match=r"embedded no-such-server server \(a child process\) exited with code 1 "
                                           r"before serving:\n(.|\n)*KeyError: 'no-such-server'"):  # fmt: skip
        server.wait_ready()
    server.close()
    assert _refused(server.port)


def test_a_child_that_never_answers_is_reported_within_the_wait():
    server = ChildServer("fakeredis")
    with pytest.raises(ServiceError, match=r"did not start serving within 0.001s"):
        server.wait_ready(timeout=0.001)
    assert server._process.poll() is not None  # stopped, not left running


def test_a_client_may_connect_before_the_child_serves():
    store = RedisStore()
    try:
        client = redis.Redis(host=store.host, port=store.port, socket_timeout=30)
        assert client.ping()  # waited in the listen backlog while the child imported fakeredis
        client.set("k", b"v")
        store.reset()
        assert client.get("k") is None
    finally:
        store.close()
    assert _refused(store.port)


def test_s3_reset_empties_moto_and_recreates_the_bucket():
    store = S3Store("xcomsim-a")
    try:
        store.reset()
        client = store.client()
        client.put_object(Bucket="xcomsim-a", Key="x", Body=b"1")
        client.create_bucket(Bucket="stray")
        store.reset("xcomsim-b")
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["xcomsim-b"]
        client.put_object(Bucket="xcomsim-b", Key="y", Body=b"2")
        store.reset("xcomsim-b")  # a request since the last reset: wiped again
        assert client.list_objects_v2(Bucket="xcomsim-b").get("KeyCount") == 0
        with pytest.raises(ServiceError, match=r"bucket 'x' failed: .*InvalidBucketName"):
            store.reset("x")
        store.reset("xcomsim-c")  # and the next reset works
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["xcomsim-c"]
    finally:
        store.close()


def test_the_s3_child_serves_s3_and_motos_own_api():
    import json
    import urllib.request

    store = S3Store("xcomsim-api")
    try:
        store.reset()
        client = store.client()
        client.put_object(Bucket="xcomsim-api", Key="a/b", Body=b"1")
        assert client.get_object(Bucket="xcomsim-api", Key="a/b")["Body"].read() == b"1"
        endpoint = client.meta.endpoint_url
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
            data = json.load(response)
        assert "xcomsim-api" in json.dumps(data["s3"])
    finally:
        store.close()


def test_the_children_stop_when_their_parent_is_killed(tmp_path):
    ports = tmp_path / "ports"
    code = textwrap.dedent(
        f"""
        import time
        from xcomsim.env.redis_store import RedisStore
        from xcomsim.env.s3_store import S3Store
        r, s = RedisStore(), S3Store("bucket-b")
        r.reset(); s.reset()
        open({str(ports)!r}, "w").write(f"{{r.port}} {{s.endpoint.rsplit(':', 1)[1]}}")
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 120
        while not ports.exists() or not ports.read_text():
            assert time.monotonic() < deadline and parent.poll() is None, "the parent never started its servers"
            time.sleep(0.1)
        served = [int(p) for p in ports.read_text().split()]
        assert not any(_refused(p) for p in served)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while not all(_refused(p) for p in served):
        assert time.monotonic() < deadline, f"a child server outlived its killed parent: ports {served}"
        time.sleep(0.1)


def test_the_s3_child_sends_replies_without_waiting_for_the_clients_ack():
    """werkzeug writes status, headers and body separately; with Nagle's algorithm on, a small body
    waited for the client's delayed ACK (a refused conditional PUT took 18 ms instead of 2)."""
    from xcomsim.env.child_server import _serve_moto

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = _serve_moto(listener)
    try:
        assert server.RequestHandlerClass.disable_nagle_algorithm is True
    finally:
        server.server_close()


def test_ctrl_c_is_the_sessions_to_handle_a_child_serves_on_until_closed():
    """A terminal's SIGINT reaches the children too; they serve on while the session tears down."""
    import os
    import signal

    store = RedisStore()
    try:
        client = redis.Redis(host=store.host, port=store.port, socket_timeout=30)
        assert client.ping()
        os.kill(store._server._process.pid, signal.SIGINT)
        time.sleep(0.5)
        client.close()  # a connection's own thread would keep a dying child's server up until it ends
        time.sleep(0.5)
        assert store._server._process.poll() is None
        assert redis.Redis(host=store.host, port=store.port, socket_timeout=30).set("k", b"v")
    finally:
        store.close()
    assert _refused(store.port)
