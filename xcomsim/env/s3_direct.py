"""botocore's requests to the embedded S3 reach moto without HTTP, as moto's own mock does; the state stays in the child.

The embedded S3 is moto's S3 app in a child process (``child_server``), reached over HTTP by
every client. Over HTTP a call costs about 3 ms, 5 in the middle of a DAG run: botocore's
HTTP layer, a ``100-continue`` round trip for every PUT, a new connection and a new server
thread per request, werkzeug parsing it. moto's usual way to serve botocore is in-process
(``mock_aws`` answers botocore's ``before-send`` event); here the answer comes from the child,
so s3fs (aiobotocore) and anything else still speaking HTTP to the endpoint see the same
buckets. A ``before-send`` handler on every botocore client made after the harness starts
sends a request whose URL is the embedded endpoint's, whole, over one kept connection per
thread (and process: a forked process opens its own) to a port of the child, which runs it
through the same WSGI app with the environ werkzeug's server would build. The client's own
connect and read timeouts apply, as over HTTP. Everything before sending (parameters,
signing, checksums, the interception's switch points and faults at ``_make_api_call``) and
after it (parsing, retries, errors) is botocore's own. Requests to any other endpoint
(``--xcomsim-s3-endpoint``: a real S3), and those made inside a running event loop
(aiobotocore, which inherits botocore's handlers but awaits its own response type), go over
HTTP as always.
"""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import select
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from xcomsim.env.child_server import read_frame, write_frame

CONNECT_TIMEOUT = 60.0  # botocore's defaults, for a client whose config gives none
READ_TIMEOUT = 60.0

_TARGETS: dict[str, tuple[str, int]] = {}  # "http://127.0.0.1:PORT" -> the child's direct port
_installed = False
_install_lock = threading.Lock()


def serve(endpoint: str, address: tuple[str, int]) -> None:
    """From now on botocore clients send requests for ``endpoint`` to ``address`` (the child's direct port)."""
    parts = urlsplit(endpoint)
    _TARGETS[f"{parts.scheme}://{parts.netloc}"] = address
    _install()
    _join_default_session()


def _join_default_session() -> None:
    """boto3's default session (``boto3.client(...)``) may have been made before: its later clients too.

    A session copies botocore's built-in handlers when it is made; one made before the harness
    started (by a conftest, or a server check of the session) would send over HTTP otherwise.
    """
    boto3 = sys.modules.get("boto3")
    session = getattr(getattr(boto3, "DEFAULT_SESSION", None), "_session", None)
    if session is None or _has_handler(session):
        return
    for event, handler in _HANDLERS:
        session.register(event, handler, unique_id=f"xcomsim-s3-direct-{handler.__name__}")


def _has_handler(session: Any) -> bool:
    """Whether ``session`` has ``_before_send`` already (a second one would send every request twice).
    When its emitter cannot be read, say yes: such a session only keeps going over HTTP."""
    emitter = getattr(session._events, "_emitter", session._events)
    handlers = getattr(emitter, "_handlers", None)
    if handlers is None or not hasattr(handlers, "prefix_search"):
        return True
    return _before_send in handlers.prefix_search("before-send.s3.PutObject")


def forget(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    _TARGETS.pop(f"{parts.scheme}://{parts.netloc}", None)


def _install() -> None:
    """Add the handler to botocore's built-in ones (what each new session registers), once botocore loads."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
    from wrapt import register_post_import_hook

    def add(handlers: Any) -> None:
        for entry in _HANDLERS:
            if entry not in handlers.BUILTIN_HANDLERS:
                handlers.BUILTIN_HANDLERS.append(entry)

    register_post_import_hook(add, "botocore.handlers")


_calling = threading.local()  # the timeouts of the client whose call this thread is making


def _note_timeouts(context: Any = None, **kwargs: Any) -> None:
    """Before each S3 call: its client's connect and read timeouts, which the request sent next obeys
    (``before-send`` is told only the request; ``before-call`` gets the client's config)."""
    config = (context or {}).get("client_config")
    _calling.timeouts = (getattr(config, "connect_timeout", None) or CONNECT_TIMEOUT,
                         getattr(config, "read_timeout", None) or READ_TIMEOUT)  # fmt: skip


def _before_send(request: Any, **kwargs: Any) -> Any:
    parts = urlsplit(request.url)
    address = _TARGETS.get(f"{parts.scheme}://{parts.netloc}")
    if address is None:
        return None  # not the embedded S3: botocore sends it over HTTP
    if asyncio._get_running_loop() is not None:
        return None  # aiobotocore (s3fs) inherits botocore's handlers but awaits its own response type: HTTP
    return _Channel.for_this_thread(address).send(request)


# What a session registers: the client's timeouts before each S3 call, then the send itself.
_HANDLERS = (("before-call.s3", _note_timeouts), ("before-send", _before_send))


class _Channel:
    """One kept connection to the child's direct port, for one thread of one process."""

    _local = threading.local()

    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.pid = os.getpid()
        self.sock: socket.socket | None = None

    @classmethod
    def for_this_thread(cls, address: tuple[str, int]) -> _Channel:
        channels: dict[tuple[str, int], _Channel] = cls._local.__dict__.setdefault("channels", {})
        channel = channels.get(address)
        if channel is None or channel.pid != os.getpid():  # a forked copy never shares its parent's socket
            channel = channels[address] = _Channel(address)
        return channel

    def send(self, request: Any) -> Any:
        from botocore.awsrequest import AWSResponse, HeadersDict
        from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

        connect_timeout, read_timeout = getattr(_calling, "timeouts", (CONNECT_TIMEOUT, READ_TIMEOUT))
        frame = pickle.dumps((request.method, request.url, _headers(request.headers), _body(request.body)),
                             protocol=5)  # fmt: skip
        try:
            sock = self._connected(connect_timeout)
        except TimeoutError:
            raise ConnectTimeoutError(endpoint_url=request.url) from None
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=request.url, error=exc) from None
        try:
            sock.settimeout(read_timeout)
            write_frame(sock, frame)
            reply = read_frame(sock)
            if reply is None:
                raise ConnectionError("the embedded S3 closed the connection before replying")
            status, headers, content = pickle.loads(reply)
        except TimeoutError:
            self._drop()
            raise ReadTimeoutError(endpoint_url=request.url) from None
        except OSError as exc:
            self._drop()
            raise EndpointConnectionError(endpoint_url=request.url, error=exc) from None
        if status == 0:  # the child failed to run the request at all: a server error, as over HTTP
            status, headers = 500, [("Content-Type", "text/plain")]
        reply = HeadersDict()
        for name, value in headers:
            reply[name] = value if name not in reply else f"{reply[name]}, {value}"
        return AWSResponse(request.url, status, reply, _Raw(content))

    def _connected(self, timeout: float) -> socket.socket:
        if self.sock is not None and select.select([self.sock], [], [], 0)[0]:
            self._drop()  # readable between requests: closed by the child (as urllib3 checks a pooled one)
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.sock

    def _drop(self) -> None:
        """A failed exchange leaves the connection out of step: the next request opens a new one."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _headers(headers: Any) -> list[tuple[str, str]]:
    return [(str(k), v.decode("latin-1") if isinstance(v, bytes) else str(v)) for k, v in headers.items()]


def _body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    data = body.read()  # a file-like body (botocore rewinds it itself before a retry)
    return data.encode() if isinstance(data, str) else bytes(data)


class _Raw(io.BytesIO):
    """A reply body as botocore reads one from urllib3: ``read`` and ``stream``."""

    def stream(self, amt: int = 1024, **kwargs: Any) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk
