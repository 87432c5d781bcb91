"""The embedded stores' servers, each in a child process: moto's S3 and fakeredis.

In the test's own process, a fake server costs the session its import (moto alone is about
0.5 s) and every request it serves competes for the test's GIL. In a child process it starts
on the other core while the session imports Airflow, and serves while the test runs.

The parent binds and listens on a loopback socket first and hands it to the child, so the
endpoint is known at once and nothing can take the port in between; a client that connects
before the child accepts waits in the listen backlog. The child serves until its stdin closes,
which happens when the parent closes it or dies in any way, so no server outlives its session.

This file runs as a script (``python -P child_server.py KIND FD``) and imports nothing of
xcomsim there: the child pays only for its own server.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT = 60.0  # a child that has not started serving by then is reported, not waited for
_POLL_INTERVAL = 0.01  # as fakeredis's: how long a reply the server pushes unasked may wait
REPLY_TIMEOUT = 60  # how long the fakeredis server waits for a client to take a reply
RESET_PATH = "/xcomsim/reset"  # moto child: empty every store and create ?bucket=NAME
OBJECTS_PATH = "/xcomsim/objects"  # moto child: every object of every bucket and its size, as JSON


_SERVING: set[int] = set()  # pids of this process's child servers that serve now


def serving() -> frozenset[int]:
    """The pids of this process's child servers that are serving now (a race runs them on its CPU)."""
    return frozenset(_SERVING)


class ChildServer:
    """A server of ``kind`` ("moto" or "fakeredis") in a child process, listening on ``host:port``."""

    def __init__(self, kind: str):
        self.kind = kind
        listeners = [_listener() for _ in range(2 if kind == "moto" else 1)]
        self.host, self.port = listeners[0].getsockname()[:2]
        # moto: a second port where the parent's botocore clients send requests without HTTP (s3_direct)
        self.direct_port: int | None = listeners[1].getsockname()[1] if len(listeners) > 1 else None
        self._log = tempfile.TemporaryFile(prefix=f"xcomsim-{kind}-")
        fds = [listener.fileno() for listener in listeners]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-P", str(Path(__file__).resolve()), kind, *map(str, fds)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, pass_fds=fds,
            )  # fmt: skip
        finally:
            for listener in listeners:  # the child holds its own copies: once it is gone, connecting is refused
                listener.close()
        self._ready = False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the child serves; an error naming the child and its output if it died or is stuck."""
        if self._ready:
            return
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._process.stdout], [], [], left)[0]:
                output = self._output()
                self.close()
                raise _failure(self.kind, f"did not start serving within {timeout:g}s", output)
            line = self._process.stdout.readline()
            if line == b"ready\n":
                self._ready = True
                _SERVING.add(self._process.pid)  # started on any CPU; a race moves it onto the race's CPU
                return
            if not line:
                code = self._process.wait(timeout=5)
                raise _failure(self.kind, f"exited with code {code} before serving", self._output())

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        _SERVING.discard(self._process.pid)
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()  # the child's signal to stop
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None and not stream.closed:
                stream.close()
        self._log.close()


def _listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener


def _failure(kind: str, what: str, output: str) -> Exception:
    from xcomsim.errors import ServiceError

    shown = f":\n{output.strip()}" if output.strip() else ""
    return ServiceError(f"xcomsim: the embedded {kind} server (a child process) {what}{shown}")


# --- the child ---------------------------------------------------------------------------------


def _serve_moto(listener: socket.socket) -> Any:
    import logging

    from moto.moto_api._internal.models import moto_api_backend
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server
    from werkzeug.test import Client

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    # moto's S3 app itself: moto's server puts a dispatcher in front that works out the service of
    # every request from its host and path, listing moto's ~180 service folders each time (about
    # 2 of a request's 3 ms). This server is the world's S3 endpoint: S3 requests go straight to
    # S3, and moto's own API (/moto-api/: reset, data, seeding) to the dispatcher.
    s3 = create_backend_app("s3")
    dispatcher = DomainDispatcherApplication(create_backend_app)

    def moto(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return dispatcher(environ, start_response)
        return s3(environ, start_response)

    touched = threading.Event()  # an S3 request since the last reset
    host, port = listener.getsockname()[:2]
    s3_here = Client(s3)  # moto's S3 app called in this process: a request without HTTP
    # What the test's clients send: moto reads the account from the access key.
    credential = "AWS4-HMAC-SHA256 Credential=xcomsim/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"

    def reset(bucket: str) -> None:
        """moto's own reset, then the bucket, created by a CreateBucket request to moto's S3 app in this
        process (through boto3 over loopback to this same server it cost ~3 of a reset's 4 ms)."""
        moto_api_backend.reset()
        created = s3_here.put(f"/{bucket}", headers={"Host": f"{host}:{port}", "Authorization": credential})
        if created.status_code != 200:
            body = created.get_data(as_text=True)
            code = re.search(r"<Code>(.*?)</Code>", body)
            message = re.search(r"<Message>(.*?)</Message>", body)
            raise RuntimeError(f"CreateBucket refused ({code.group(1) if code else created.status}): "
                               f"{message.group(1) if message else body[:200]}")  # fmt: skip

    last: list[str] = []
    # S3 applies a write's conditions (If-None-Match, If-Match) atomically with the write; moto checks
    # them and then writes, so two concurrent creates of one key could both succeed. One write at a time.
    writes = threading.Lock()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == OBJECTS_PATH:
            body = json.dumps(_moto_objects()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("PATH_INFO") != RESET_PATH:
            touched.set()
            if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
                with writes:
                    return moto(environ, start_response)
            return moto(environ, start_response)
        from urllib.parse import parse_qs

        bucket = parse_qs(environ.get("QUERY_STRING", "")).get("bucket", [""])[0]
        status, body = "200 OK", b"ok"
        if touched.is_set() or last != [bucket]:
            touched.clear()
            last[:] = []
            try:
                reset(bucket)
            except Exception as exc:  # the parent shows it: a bad bucket name, say
                status, body = "500 Internal Server Error", f"{type(exc).__name__}: {exc}".encode()
            else:
                last[:] = [bucket]
            touched.clear()  # the bucket's own creation is not a test's request
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    # Replies go out as written: werkzeug writes a reply's status, headers and body separately, and
    # with Nagle's algorithm on, a small body waits for the client's delayed ACK of the headers.
    handler = type("NoDelayMotoHandler", (MotoRequestHandler,), {"disable_nagle_algorithm": True})
    server = make_server(host, port, app, threaded=True, request_handler=handler, fd=listener.fileno())
    # moto's S3 request path, run once while the parent imports Airflow (its first use is slow).
    warm_up = functools.partial(s3_here.get, "/", headers={"Host": f"{host}:{port}", "Authorization": credential})
    threading.Thread(target=warm_up, daemon=True, name="xcomsim-moto-warm-up").start()
    return server


def _moto_objects() -> dict[str, int]:
    """``s3://bucket/key`` -> size of every object in every bucket of moto's S3, as ListObjectsV2 lists
    them (each key's latest version, no delete markers), read from moto's state in one request instead
    of a ListBuckets and a ListObjectsV2 per bucket."""
    from moto.s3.models import FakeDeleteMarker, s3_backends

    for _ in range(10):  # a request in another thread may change a bucket while it is read
        try:
            found = {}
            for regions in list(s3_backends.values()):
                for backend in list(regions.values()):
                    for name, bucket in list(backend.buckets.items()):
                        for key_name, key in list(bucket.keys.items()):
                            if not isinstance(key, FakeDeleteMarker):
                                found[f"s3://{name}/{key_name}"] = key.size
            return found
        except RuntimeError:  # changed size during iteration: read again
            continue
    raise RuntimeError("moto's buckets kept changing while they were listed")


class _WholeSend:
    """Sends a reply whole on a non-blocking socket, waiting while the client's buffer is full.

    fakeredis's TCP server puts each connection in non-blocking mode (for its reads) and
    sends replies with ``sendall`` on it: a reply larger than the socket buffer (a 16 MiB
    value pulled by a client busy elsewhere, on a loaded machine) fails half-sent with
    ``BlockingIOError``, the client reads a broken reply, and a backend would be blamed for
    the harness's fault.
    """

    def __init__(self, sock: Any):
        self._sock = sock

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view):]
            except BlockingIOError:
                if not select.select([], [self._sock], [], REPLY_TIMEOUT)[1]:
                    raise TimeoutError(f"a Redis client took no reply data for {REPLY_TIMEOUT}s") from None
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered."""


def _serve_fakeredis(listener: socket.socket) -> Any:
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(listener.getsockname()[:2], bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    handler = server.RequestHandlerClass

    def setup(self: Any) -> None:
        handler.setup(self)
        self.writer.writer = _WholeSend(self.connection)

    def handle(self: Any) -> None:
        """fakeredis's own loop, fed what the socket has rather than a line at a time.

        Its handler reads one RESP line per turn (a SET with NX and PX is eleven lines, each a
        select, a readline and a feed of fakeredis's parser), which is most of a command's cost
        here: 112 -> 97 us a SET NX PX on one CPU. The parser takes any split of the stream; as
        fakeredis's loop, replies the server pushes unasked (pub/sub, a blocking command's wake-up)
        go out within the poll interval, an error reply keeps the connection, end of stream ends it.
        """
        from fakeredis._typing import RaiseErrorTypes

        conn, client = self.connection, self.current_client
        while not self.server._shutdown_event.is_set():
            try:
                if client.can_read():
                    try:
                        response = client.read_response()
                    except RaiseErrorTypes as exc:
                        response = exc
                    self.writer.dump(response)
                    continue
                if not select.select([conn], [], [], _POLL_INTERVAL)[0]:
                    continue
                try:
                    data = conn.recv(1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    break
                client.get_socket().sendall(data)
            except ConnectionError:
                break
            except Exception as exc:
                self.writer.dump(exc)
                break

    server.RequestHandlerClass = type("WholeRepliesHandler", (handler,), {"setup": setup, "handle": handle})
    return server


def _serve_direct(listener: socket.socket, app: Any) -> None:
    """The parent's botocore requests, framed as ``xcomsim.env.s3_direct`` sends them, each run through
    ``app`` with the WSGI environ werkzeug's HTTP server would have built for it; a thread per connection."""
    import pickle
    from email.utils import formatdate
    from urllib.parse import urlsplit

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    def answer(frame: bytes) -> bytes:
        method, url, headers, body = pickle.loads(frame)
        parts = urlsplit(url)
        # The body arrives whole: its length is the one werkzeug computes (a Transfer-Encoding header
        # would leave CONTENT_LENGTH unset and moto would read an empty body).
        fields = [(k, v) for k, v in headers if k.lower() not in ("content-length", "content-type", "transfer-encoding")]
        kind = next((v for k, v in headers if k.lower() == "content-type"), None)
        # The path as sent (still quoted): werkzeug unquotes it into PATH_INFO and keeps it as RAW_URI.
        environ = EnvironBuilder(path=parts.path or "/", base_url=f"{parts.scheme}://{parts.netloc}",
                                 query_string=parts.query, method=method, headers=fields, data=body,
                                 content_type=kind).get_environ()  # fmt: skip
        app_iter, status, reply_headers = run_wsgi_app(app, environ, buffered=True)
        try:
            content = b"".join(app_iter)
        finally:
            getattr(app_iter, "close", lambda: None)()
        if "Date" not in reply_headers:  # as werkzeug's HTTP server adds it: the store's clock, for ages
            reply_headers["Date"] = formatdate(usegmt=True)
        return pickle.dumps((int(status.split(" ", 1)[0]), list(reply_headers.items()), content), protocol=5)

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                frame = read_frame(conn)
                if frame is None:
                    return
                try:
                    reply = answer(frame)
                except Exception as exc:  # the parent answers it as a server error
                    reply = pickle.dumps((0, [], f"{type(exc).__name__}: {exc}".encode()), protocol=5)
                write_frame(conn, reply)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True, name="xcomsim-moto-direct").start()


def write_frame(conn: socket.socket, data: bytes) -> None:
    """One length-prefixed frame of the direct port (both ends use these two)."""
    conn.sendall(len(data).to_bytes(8, "big") + data)


def read_frame(conn: socket.socket) -> bytes | None:
    """One length-prefixed frame; None when the peer closed the connection between frames."""
    head = _read_exactly(conn, 8)
    return None if head is None else _read_exactly(conn, int.from_bytes(head, "big"), allow_eof=False)


def _read_exactly(conn: socket.socket, size: int, allow_eof: bool = True) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            if allow_eof and left == size:
                return None
            raise ConnectionError(f"connection closed {size - left} bytes into a {size}-byte frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def main(kind: str, fd: int, direct_fd: int | None = None) -> None:
    listener = socket.socket(fileno=fd)
    server = {"moto": _serve_moto, "fakeredis": _serve_fakeredis}[kind](listener)
    threading.Thread(target=server.serve_forever, daemon=True, name=f"xcomsim-{kind}").start()
    if direct_fd is not None:
        threading.Thread(target=_serve_direct, args=(socket.socket(fileno=direct_fd), server.app), daemon=True,
                         name="xcomsim-moto-direct-accept").start()  # fmt: skip
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # until the parent closes its end, or dies
    os._exit(0)  # the serving threads hold no state worth a clean shutdown


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole foreground process group: it is the session's to
    # handle (pytest stops and closes its servers), so the child serves on until its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    main(sys.argv[1], *map(int, sys.argv[2:]))
