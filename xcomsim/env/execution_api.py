"""Airflow's in-process Execution API as xcomsim serves it: the same app, less in the way.

Tasks run in-process reach the metadata DB through Airflow's Execution API app
(``in_process_api_server``, one per process). Three things differ from Airflow's own
in-process client, none of them in the routes, their dependencies or their SQL:

- The app is built for one API version, the one the installed task SDK speaks. Cadwyn
  builds every version's routes on the first request (about 2.5 s on 2 cores, the largest
  single cost of a session's start); older versions exist to migrate requests of older
  workers, and an in-process worker is always this task SDK. That version is Airflow's head
  version (the build is skipped otherwise), so its routes are the head routes themselves, not
  copies wrapped in migrations that change nothing.
- Requests are served inline in the calling thread (``InlineTransport``), not handed to an
  event-loop thread and anyio's thread pool, on an event loop each thread keeps between them.
- FastAPI's per-request analysis of dependencies under ``dependency_overrides`` is
  remembered (``_get_dependant``).

Every request runs with its own ``metadata_db.REQUEST`` token (``_PerRequest``): the SQLite
tier's leased pool tells requests apart, not threads, because on Airflow's own transport
(still used from inside a running event loop) a route and its session's teardown may run on
different pool threads, with another request served in between.

Every xcomsim path to the API goes through ``client()`` or ``mark_requests()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any

from xcomsim.compat.execution_api import api_server, started_transport
from xcomsim.env.metadata_db import REQUEST


class _PerRequest:
    """ASGI wrapper: a fresh ``REQUEST`` token for each request (and lifespan) it passes on."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = REQUEST.set(object())
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST.reset(token)


def _build_for_sdk_version(api: Any) -> Any:
    """``api.app``, built with the task SDK's version as its only one when Airflow's bundle allows it."""
    if api._app is not None:  # built already (by this module or by Airflow's own callers)
        return api.app
    from airflow.api_fastapi.execution_api import versions
    from airflow.sdk.api.datamodels._generated import API_VERSION
    from cadwyn import HeadVersion, Version, VersionBundle
    from cadwyn.route_generation import _DELETED_ROUTE_TAG

    full = versions.bundle
    newest = full.versions[0].value if full.versions else None
    if full.head_version.changes or str(newest) != API_VERSION:
        return api.app  # the SDK speaks an older version: it needs Airflow's migrations
    versions.bundle = VersionBundle(HeadVersion(), Version(newest))
    try:
        app = api.app
    finally:
        versions.bundle = full
    # Routes that exist only in older versions are never served to this SDK.
    latest = app._latest_version_router
    latest.routes = [r for r in latest.routes if _DELETED_ROUTE_TAG not in getattr(r, "tags", ())]

    def initialize() -> None:
        """cadwyn's first-request set-up, for one version that changes nothing: its routes are the head's.

        cadwyn would copy every route and schema for the version and wrap each endpoint in a
        request and response migration, all identities here (about 0.5 s, and ~2 ms a request).
        """
        app._add_versioned_routers(latest, version=newest)
        app._cadwyn_initialized = True

    app._cadwyn_initialize = initialize
    return app


_DEPENDANTS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_DEPENDANTS_KEPT = 4096
_original_get_dependant: Any = None
_solve_dependencies_code: Any = None
# The arguments solve_dependencies passes; a call with any other is not remembered.
# (FastAPI 0.117, the one Airflow 3.1 allows, passes ``security_scopes``; 0.136 ``parent_oauth_scopes`` and ``scope``.)
_MEMO_KEYS = frozenset({"path", "call", "name", "parent_oauth_scopes", "scope", "security_scopes"})


def _get_dependant(**kwargs: Any) -> Any:
    """FastAPI's ``get_dependant``, remembered for the calls ``solve_dependencies`` makes per request.

    With any ``dependency_overrides`` installed (the in-process API always has some: it bypasses
    the JWT checks) FastAPI rebuilds every sub-dependency's ``Dependant`` on every request,
    inspecting signatures each time: about a third of a request's time. The result depends only
    on these arguments, and solve_dependencies only reads it; calls from anywhere else (route
    construction, which mutates what it gets) are not remembered.
    """
    if sys._getframe(1).f_code is not _solve_dependencies_code or set(kwargs) - _MEMO_KEYS:
        return _original_get_dependant(**kwargs)
    scopes = kwargs.get("parent_oauth_scopes")
    security = kwargs.get("security_scopes")
    key = (kwargs["path"], kwargs["call"], kwargs.get("name"), tuple(scopes) if scopes is not None else None,
           kwargs.get("scope"), tuple(security) if security is not None else None)  # fmt: skip
    try:
        _DEPENDANTS.move_to_end(key)
        return _DEPENDANTS[key]
    except KeyError:
        pass
    dependant = _DEPENDANTS[key] = _original_get_dependant(**kwargs)
    while len(_DEPENDANTS) > _DEPENDANTS_KEPT:
        _DEPENDANTS.popitem(last=False)
    return dependant


def _install_dependant_memo() -> None:
    global _original_get_dependant, _solve_dependencies_code
    from fastapi.dependencies import utils

    _solve_dependencies_code = utils.solve_dependencies.__code__
    if utils.get_dependant is not _get_dependant:
        _original_get_dependant = utils.get_dependant
        utils.get_dependant = _get_dependant


def mark_requests() -> None:
    """Wrap the in-process API app's middleware stack once (building it as Starlette would)."""
    _install_dependant_memo()

    app = _build_for_sdk_version(api_server())
    if not isinstance(app.middleware_stack, _PerRequest):
        app.middleware_stack = _PerRequest(app.middleware_stack or app.build_middleware_stack())


def client(dag: Any = None) -> Any:
    """Airflow's in-process API client (``InProcessTestSupervisor._api_client``), requests marked and
    served inline in the calling thread (``InlineTransport``)."""
    import httpx
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    mark_requests()
    airflows = InProcessTestSupervisor._api_client(dag)  # sets the app's DAG-bag override as dag.test() does
    api = api_server()
    # As a server would: an exception in the app is a 500 response (Airflow's handler), not the client's.
    app = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    inline = InProcessTestSupervisor._Client(
        base_url=None, token="", dry_run=True, transport=InlineTransport(app, started_transport(api))
    )
    inline.base_url = airflows.base_url
    return inline


_request_scope: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext


def set_request_scope(scope: Callable[[], AbstractContextManager[Any]]) -> None:
    """Serve every inline request inside ``scope()``.

    The race scheduler registers its own (``interception.serving``): a request a scheduled worker
    makes is served in the worker's thread, and the server's I/O must be neither a switch point
    nor the worker's to fail. Registered from above, so this module knows nothing of races.
    """
    global _request_scope
    _request_scope = scope


_INLINE: ContextVar[bool] = ContextVar("xcomsim_inline_request", default=False)
_original_run_sync: Any = None


async def _run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
    """``anyio.to_thread.run_sync``, run in the calling thread while an inline request is served."""
    if _INLINE.get():
        return func(*args)
    return await _original_run_sync(func, *args, **kwargs)


def _install_inline_threadpool() -> None:
    """FastAPI and Starlette run sync routes and dependencies through ``anyio.to_thread.run_sync``
    (looked up at each call); inside an inline request it calls them directly. Starlette's
    ``BaseHTTPMiddleware`` (Airflow's correlation-id and token-reissue middleware, cadwyn's
    version picking) hands the rest of the app to a task group and streams its reply back
    through memory streams; inside an inline request ``call_next`` awaits it directly
    (``_base_http_middleware_call``)."""
    global _original_run_sync, _original_base_http_call
    import anyio.to_thread
    from starlette.middleware.base import BaseHTTPMiddleware

    if anyio.to_thread.run_sync is not _run_sync:
        _original_run_sync = anyio.to_thread.run_sync
        anyio.to_thread.run_sync = _run_sync
    if BaseHTTPMiddleware.__call__ is not _base_http_middleware_call:
        _original_base_http_call = BaseHTTPMiddleware.__call__
        BaseHTTPMiddleware.__call__ = _base_http_middleware_call  # type: ignore[method-assign]


_original_base_http_call: Any = None


async def _base_http_middleware_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
    """Starlette's ``BaseHTTPMiddleware.__call__``; while a request is served inline, ``call_next`` runs
    the rest of the app in one task of its own and hands its reply back whole.

    Starlette's own plumbing (a task group, a memory stream, a receive raced against "response
    sent", about 40 event-loop turns a request) is 12% of a 10-task DAG run here, and its only
    purpose is streaming to a client that reads while the app writes; an inline request's reply
    is read whole after the app returns (httpx's ASGI transport). What the middleware's
    ``dispatch`` sees is Starlette's: the same cached request (a body read in ``dispatch`` still
    reaches the app), a ``_StreamingResponse`` with the app's status, headers and body, the app's
    exception raised from ``call_next`` (or after the reply, if the app failed once it had
    started one), "No response returned." when it sent none, and the app in a task of its own,
    so context variables it sets stay its own; an interrupt in the app (the run timeout, Ctrl-C)
    is raised on in the middleware's task, leaving no task behind. Anything else (another server,
    a websocket, a request not served inline) goes through Starlette's own ``__call__``.

    Where it differs (an adversarial review's findings, none reachable through the Execution
    API, which has no streaming route and no background task and whose middleware neither
    fails after ``call_next`` nor is cancelled): the app's reply is taken whole, so the
    dispatch's code after ``call_next`` runs once the app and its background tasks are done
    (a never-ending stream would not end); an outer anyio cancellation reaches a shielded
    section of the app; an exception the app raises has no task group's ``ExceptionGroup``
    chained to it.
    """
    if scope["type"] != "http" or not _INLINE.get():
        await _original_base_http_call(self, scope, receive, send)
        return
    from starlette.middleware.base import _StreamingResponse

    from xcomsim.compat.middleware import cached_request

    request = cached_request(scope, receive, send)
    app_receive = request.wrapped_receive
    failed: list[Exception] = []

    async def call_next(_: Any) -> Any:
        sent: list[Any] = []

        async def keep(message: Any) -> None:
            if message["type"] == "http.response.early_hint":
                await send(message)
            else:
                sent.append(message)

        interrupted: list[BaseException] = []

        async def run_app() -> None:
            try:
                await self.app(scope, app_receive, keep)
            except Exception as exc:
                failed.append(exc)
            except BaseException as exc:  # raised on in the middleware's task, not out of this one's step
                interrupted.append(exc)

        await asyncio.get_running_loop().create_task(run_app())
        if interrupted:
            raise interrupted[0]
        info = next((m["info"] for m in reversed(sent) if m["type"] == "http.response.debug"), None)
        replies = [m for m in sent if m["type"] != "http.response.debug"]
        if not replies or replies[0]["type"] != "http.response.start":
            if failed:
                exc = failed.pop()
                raise exc from exc.__cause__ or exc.__context__
            raise RuntimeError("No response returned.")
        start, rest = replies[0], replies[1:]

        async def body() -> Any:
            for message in rest:
                if message["type"] == "http.response.pathsend":
                    yield message
                    break
                if message.get("body", b""):
                    yield message["body"]
                if not message.get("more_body", False):
                    break

        response = _StreamingResponse(status_code=start["status"], content=body(), info=info)
        response.raw_headers = start.get("headers", [])
        return response

    response = await self.dispatch_func(request, call_next)
    await response(scope, app_receive, send)
    if failed:
        raise failed[0]


def _interrupt_in(group: BaseExceptionGroup) -> BaseException | None:
    """The first interrupt (a BaseException that is no Exception: the run timeout, Ctrl-C) in ``group``.

    Served inline, a route runs in the thread the run timeout's signal lands in. Starlette's
    middleware task groups wrap what escapes the route, together with their own follow-on errors
    ("No response returned."); the caller must get the interrupt itself, as it would from a
    request that was never served inline.
    """
    for exc in group.exceptions:
        found = _interrupt_in(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if found is not None and not isinstance(found, Exception):
            return found
    return None


class _ThreadLoops(threading.local):
    """One event loop per thread for inline requests, kept between them.

    A new loop per request costs a selector and a socket pair, made and closed again (about
    0.14 ms of a 2.5 ms request). A loop is kept only after a request that completed and left
    no task behind: one interrupted (the run timeout, Ctrl-C) or failing may have left work on
    it, so it is closed and the next request gets a new one. A process forked from this one
    (Airflow's supervisor forks task processes) never uses or closes a loop it inherited: its
    epoll instance is shared with the parent. The loop of a finished thread is closed when the
    thread's holder goes (``_OwnedLoop``), not left to warn as unclosed.
    """

    owned: _OwnedLoop | None = None

    def take(self) -> asyncio.AbstractEventLoop:
        owned, self.owned = self.owned, None
        loop = owned.release() if owned is not None else None
        return loop if loop is not None and not loop.is_closed() else asyncio.new_event_loop()

    def give_back(self, loop: asyncio.AbstractEventLoop, clean: bool) -> None:
        if clean and not loop.is_closed() and not asyncio.all_tasks(loop):
            self.owned = _OwnedLoop(loop)
        else:
            loop.close()


class _OwnedLoop:
    """A kept loop and the process it belongs to; closed when dropped in that process."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop: asyncio.AbstractEventLoop | None = loop
        self.pid = os.getpid()

    def release(self) -> asyncio.AbstractEventLoop | None:
        """The loop, unless this is a forked copy of the process that made it."""
        loop, self.loop = self.loop, None
        return loop if self.pid == os.getpid() else None

    def __del__(self) -> None:
        if self.loop is not None and self.pid == os.getpid() and not self.loop.is_closed():
            self.loop.close()


_LOOPS = _ThreadLoops()


class InlineTransport:
    """An httpx transport that serves each request in the calling thread, on an event loop of its own.

    Airflow's transport hands every request to an event-loop thread (a2wsgi), which runs the
    route and each sync dependency on anyio's thread pool: four threads and about thirty thread
    switches per request, most of a task's time in the Execution API. Here the same ASGI app
    (its middleware, cadwyn's version handling, the routes, their dependencies and SQL) runs on a short-lived loop in the caller's thread, and the sync parts run where
    FastAPI would have awaited a worker thread. A caller that is already inside a running event
    loop (a trigger's coroutine) cannot start another one: its requests go through Airflow's
    own transport (``fallback``).
    """

    def __init__(self, atransport: Any, fallback: Any):
        _install_inline_threadpool()
        self._atransport = atransport
        self._fallback = fallback

    def handle_request(self, request: Any) -> Any:
        import httpx

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return self._fallback.handle_request(request)

        async def serve() -> Any:
            response = await self._atransport.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content,
                                  extensions=response.extensions, request=request)  # fmt: skip

        token = _INLINE.set(True)
        loop = _LOOPS.take()
        clean = False
        try:
            with _request_scope():  # a scheduled worker's request: the server's I/O is not the worker's
                response = loop.run_until_complete(serve())
            clean = True
            return response
        except BaseExceptionGroup as group:
            interrupt = _interrupt_in(group)
            if interrupt is None:
                raise
            raise interrupt.with_traceback(interrupt.__traceback__) from None
        finally:
            _LOOPS.give_back(loop, clean)
            _INLINE.reset(token)

    def close(self) -> None:
        pass
