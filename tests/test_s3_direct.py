"""botocore's requests to the embedded S3 go to moto in the child without HTTP; nothing else does, and the
buckets are the same ones every HTTP client sees."""

from __future__ import annotations

import contextlib
import os
import socket
import time

import pytest

from xcomsim.env import s3_direct
from xcomsim.env.s3_store import S3Store

BUCKET = "xcomsim-direct"


@pytest.fixture(scope="module")
def store():
    store = S3Store(BUCKET)
    store.reset()
    yield store
    store.close()


@contextlib.contextmanager
def _over_http(endpoint: str):
    """Requests to ``endpoint`` go over HTTP for the length of the block (as without this module)."""
    address = s3_direct._TARGETS[endpoint]
    s3_direct.forget(endpoint)
    try:
        yield
    finally:
        s3_direct.serve(endpoint, address)


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    import botocore.endpoint

    counts = {"direct": 0, "http": 0}
    send, http = s3_direct._Channel.send, botocore.endpoint.Endpoint._send
    monkeypatch.setattr(s3_direct._Channel, "send", lambda self, r: counts.__setitem__("direct", counts["direct"] + 1)
                        or send(self, r))  # fmt: skip
    monkeypatch.setattr(botocore.endpoint.Endpoint, "_send", lambda self, r: counts.__setitem__("http", counts["http"] + 1)
                        or http(self, r))  # fmt: skip
    return counts


KEYS = ["plain", "with space", "plus+sign", "unicode-é-ü", "a/b/../c", "pct%20literal", "q?x=1&y", "tilde~star*"]


def test_what_one_path_writes_the_other_reads_byte_for_byte(store, monkeypatch):
    """Direct and HTTP requests are answered from one state, with the same keys, bodies and metadata."""
    counts = _counting(monkeypatch)
    client = store.client()
    big = os.urandom(5 * 1024 * 1024 + 7)
    for key in KEYS:
        client.put_object(Bucket=BUCKET, Key=key, Body=key.encode() * 3, Metadata={"who": "direct"})
    client.put_object(Bucket=BUCKET, Key="big", Body=big)
    assert counts == {"direct": len(KEYS) + 1, "http": 0}
    with _over_http(store.endpoint):
        for key in KEYS:
            got = client.get_object(Bucket=BUCKET, Key=key)
            assert got["Body"].read() == key.encode() * 3 and got["Metadata"] == {"who": "direct"}
        assert client.get_object(Bucket=BUCKET, Key="big")["Body"].read() == big
        listed_over_http = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
        client.put_object(Bucket=BUCKET, Key="from http", Body=b"h")
    assert counts["http"] > 0
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]) == sorted(
        [*listed_over_http, "from http"])  # fmt: skip
    assert client.get_object(Bucket=BUCKET, Key="from http")["Body"].read() == b"h"
    assert client.get_object(Bucket=BUCKET, Key="big", Range="bytes=10-19")["Body"].read() == big[10:20]


def test_errors_and_conditions_are_s3s_own_answers(store):
    from botocore.exceptions import ClientError

    client = store.client()
    client.put_object(Bucket=BUCKET, Key="guard", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as taken:
        client.put_object(Bucket=BUCKET, Key="guard", Body=b"2", IfNoneMatch="*")
    assert taken.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as missing:
        client.get_object(Bucket=BUCKET, Key="no such key")
    assert missing.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as head:
        client.head_object(Bucket=BUCKET, Key="no such key")
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_other_endpoints_and_async_clients_are_not_taken(store, monkeypatch):
    """A real S3 (--xcomsim-s3-endpoint) is never short-circuited; neither is a call inside a running loop."""
    import asyncio

    import boto3
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    counts = _counting(monkeypatch)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    elsewhere = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                             aws_access_key_id="a", aws_secret_access_key="b",
                             config=Config(retries={"total_max_attempts": 1}, connect_timeout=1))  # fmt: skip
    with pytest.raises(EndpointConnectionError):
        elsewhere.list_buckets()
    assert counts == {"direct": 0, "http": 1}

    client = store.client()

    async def inside_a_loop():
        return client.list_buckets()

    assert BUCKET in [b["Name"] for b in asyncio.run(inside_a_loop())["Buckets"]]
    assert counts == {"direct": 0, "http": 2}


def test_a_child_that_does_not_answer_is_a_read_timeout_not_a_hang():
    """Every wait is bounded: a server that accepts and never replies ends the call with botocore's error."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ReadTimeoutError

    mute = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never reads nor answers
    endpoint = "http://127.0.0.1:9"  # never dialled: the request is sent to the mute server
    s3_direct.serve(endpoint, mute.getsockname()[:2])
    try:
        # The client's own read timeout applies, as over HTTP (not the module's 60 s default).
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="a",
                              aws_secret_access_key="b",
                              config=Config(read_timeout=0.3, retries={"total_max_attempts": 2}))  # fmt: skip
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            client.list_buckets()
        assert time.monotonic() - started < 5
    finally:
        s3_direct.forget(endpoint)
        mute.close()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_dead_child_is_a_connection_error_and_a_forked_process_opens_its_own_connection():
    from botocore.exceptions import EndpointConnectionError

    store = S3Store("xcomsim-dying")
    try:
        store.reset()
        client = store.client()
        client.list_buckets()
        channel = s3_direct._Channel.for_this_thread(s3_direct._TARGETS[store.endpoint])
        assert channel.sock is not None  # kept for the next request
        pid = os.fork()
        if pid == 0:  # the child process: a channel of its own, not the parent's socket
            mine = s3_direct._Channel.for_this_thread(channel.address)
            os._exit(0 if mine is not channel and mine.sock is None else 1)
        deadline = time.monotonic() + 30
        while (status := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        if status == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert status[0] == pid and os.waitstatus_to_exitcode(status[1]) == 0
        store._server._process.kill()
        store._server._process.wait(timeout=10)
        with pytest.raises(EndpointConnectionError):
            client.list_buckets()
    finally:
        store.close()


def test_a_chunked_transfer_header_does_not_empty_the_body(store):
    """The body travels whole; a Transfer-Encoding header (botocore sets one for a body of unknown length)
    must not make moto read an empty body."""
    client = store.client()

    def chunked(request, **kwargs):
        request.headers["Transfer-Encoding"] = "chunked"

    client.meta.events.register("before-sign.s3.PutObject", chunked)
    try:
        client.put_object(Bucket=BUCKET, Key="chunked", Body=b"hello world")
    finally:
        client.meta.events.unregister("before-sign.s3.PutObject", chunked)
    assert client.get_object(Bucket=BUCKET, Key="chunked")["Body"].read() == b"hello world"


def test_a_kept_connection_the_child_closed_is_replaced_before_use(store, monkeypatch):
    """As urllib3 checks a pooled connection: one closed between requests is not used (no failed attempt)."""
    counts = _counting(monkeypatch)
    client = store.client()
    client.list_buckets()
    channel = s3_direct._Channel.for_this_thread(s3_direct._TARGETS[store.endpoint])
    ours, theirs = socket.socketpair()
    theirs.close()  # what the child's side of a dropped connection looks like: readable, at EOF
    channel.sock.close()
    channel.sock = ours
    import boto3
    from botocore.config import Config

    from xcomsim.env.s3_store import ACCESS_KEY, REGION, SECRET_KEY

    once = boto3.client("s3", endpoint_url=store.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 1}))  # fmt: skip
    assert BUCKET in [b["Name"] for b in once.list_buckets()["Buckets"]]
    assert channel.sock is not ours and counts["direct"] == 2


def test_boto3s_default_session_made_before_the_harness_joins_once(store, monkeypatch):
    """A conftest (or a real server's check) may have made boto3's default session first: its later clients
    go direct too, and a session that has the handler already is not given a second one (every request
    would be sent twice)."""
    import boto3
    import botocore.handlers

    from xcomsim.env.s3_store import ACCESS_KEY, REGION, SECRET_KEY

    def new_client():
        return boto3.client("s3", endpoint_url=store.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY)  # fmt: skip

    ours = [h for h in botocore.handlers.BUILTIN_HANDLERS if h[1] in (s3_direct._before_send, s3_direct._note_timeouts)]
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS",
                        [h for h in botocore.handlers.BUILTIN_HANDLERS if h not in ours])  # fmt: skip
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session()  # made without the handlers, as before the harness started
    counts = _counting(monkeypatch)
    new_client().list_buckets()
    assert counts == {"direct": 0, "http": 1}
    s3_direct.serve(store.endpoint, s3_direct._TARGETS[store.endpoint])
    s3_direct.serve(store.endpoint, s3_direct._TARGETS[store.endpoint])  # joining twice adds nothing
    new_client().put_object(Bucket=BUCKET, Key="once", Body=b"1", IfNoneMatch="*")  # twice would be refused
    assert counts == {"direct": 1, "http": 1}


def test_a_default_session_that_has_the_handler_is_not_given_a_second(store, monkeypatch):
    import boto3

    from xcomsim.env.s3_store import ACCESS_KEY, REGION, SECRET_KEY

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session()  # made after the harness started: botocore's built-in handlers include ours
    s3_direct.serve(store.endpoint, s3_direct._TARGETS[store.endpoint])
    counts = _counting(monkeypatch)
    boto3.client("s3", endpoint_url=store.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                 aws_secret_access_key=SECRET_KEY).put_object(Bucket=BUCKET, Key="not twice", Body=b"1")  # fmt: skip
    assert counts == {"direct": 1, "http": 0}
