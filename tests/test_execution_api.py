"""The in-process Execution API as xcomsim serves it: Airflow's routes for the task SDK's version,
each request inline in the caller's thread, FastAPI's per-request dependency analysis remembered."""

from __future__ import annotations

import asyncio
import pytest

from xcomsim.env import execution_api


def _routes(router) -> set[tuple[str, frozenset[str], str]]:
    """Each route's path, methods and endpoint (cadwyn wraps endpoints per build; names are kept)."""
    return {(r.path, frozenset(r.methods or ()), f"{r.endpoint.__module__}.{r.endpoint.__qualname__}")
            for r in router.routes if hasattr(r, "endpoint")}  # fmt: skip


def _status(call) -> int:
    """The status of a response the SDK's client refuses (it raises on 4xx and 5xx)."""
    from airflow.sdk.api.client import ServerResponseError

    with pytest.raises(ServerResponseError) as refused:
        call()
    return refused.value.response.status_code


def test_the_app_serves_exactly_the_full_apps_routes_for_the_sdks_version(xcomsim_env):
    """Building one version instead of all must not drop, add or swap a route the SDK can reach."""
    from airflow.api_fastapi.execution_api.app import create_task_execution_api_app
    from airflow.sdk.api.datamodels._generated import API_VERSION
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    execution_api.mark_requests()
    ours = in_process_api_server().app
    ours._cadwyn_initialize() if not ours._cadwyn_initialized else None
    full = create_task_execution_api_app()
    full._cadwyn_initialize()
    assert len(full.router.versioned_routers) > 1, "Airflow's bundle has one version: nothing to compare"
    assert list(ours.router.versioned_routers) == [API_VERSION]
    served = _routes(ours.router.versioned_routers[API_VERSION])
    assert served and served == _routes(full.router.versioned_routers[API_VERSION])


def test_requests_run_in_the_calling_thread_and_give_airflows_answers(xcomsim_env):
    seen: list[str] = []
    client = execution_api.client()
    original = execution_api._original_run_sync
    try:
        execution_api._original_run_sync = lambda *a, **k: seen.append("pool") or original(*a, **k)
        response = client.get("health")
        missing = _status(lambda: client.get("xcoms/no_dag/no_run/no_task/no_key"))
    finally:
        execution_api._original_run_sync = original
    assert response.status_code == 200 and response.json() == {"status": "healthy"}
    assert missing == 404  # Airflow's own answer, not an exception raised here
    assert seen == [], "a sync route or dependency went to anyio's thread pool"


def test_an_exception_in_a_route_is_a_500_response_as_from_a_server(xcomsim_env):
    from airflow.api_fastapi.execution_api.routes import health
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    app = in_process_api_server().app
    client = execution_api.client()
    client.get("health")  # routes generated

    (version,) = app.router.versioned_routers
    route = next(r for r in app.router.versioned_routers[version].routes if getattr(r, "path", "").endswith("/health"))
    assert route.endpoint.__module__ == health.__name__
    original = route.app

    async def failing(scope, receive, send):
        raise RuntimeError("route failed")

    route.app = failing
    try:
        assert _status(lambda: client.get("health")) == 500
    finally:
        route.app = original


def test_a_caller_inside_a_running_loop_goes_through_airflows_transport(xcomsim_env):
    """A trigger's coroutine cannot start a second loop in its thread; its requests still work."""
    client = execution_api.client()
    fallback = client._transport._fallback
    used: list[object] = []
    original = fallback.handle_request
    fallback.handle_request = lambda request: used.append(request) or original(request)
    try:
        response = asyncio.run(_get_in_loop(client))
    finally:
        fallback.handle_request = original
    assert response.status_code == 200 and len(used) == 1


async def _get_in_loop(client):
    return client.get("health")


def test_dependency_analysis_is_remembered_across_requests(xcomsim_env, monkeypatch: pytest.MonkeyPatch):
    client = execution_api.client()
    client.get("health")
    calls: list[object] = []
    original = execution_api._original_get_dependant

    def counting(**kwargs):
        calls.append(kwargs["call"])
        return original(**kwargs)

    monkeypatch.setattr(execution_api, "_original_get_dependant", counting)
    client.get("health")
    first = len(calls)
    client.get("health")
    assert len(calls) == first, "solve_dependencies analysed the same dependencies again"


def test_route_construction_is_never_served_from_the_memo():
    """Routes mutate the Dependant they get (route-level dependencies are inserted): never shared."""
    from fastapi import Depends, FastAPI

    execution_api._install_dependant_memo()

    def dep() -> int:
        return 1

    def endpoint(x: int = Depends(dep)) -> int:
        return x

    app = FastAPI()
    app.add_api_route("/a", endpoint, dependencies=[Depends(dep)])
    app.add_api_route("/b", endpoint)
    a, b = (r for r in app.routes if getattr(r, "path", "") in ("/a", "/b"))
    assert a.dependant is not b.dependant
    assert len(a.dependant.dependencies) == len(b.dependant.dependencies) + 1


class _Crash(BaseException):
    """A BaseException, as the scheduler's WorkerCrash is."""


def test_a_workers_hooks_and_faults_stay_out_of_the_request_it_is_served(xcomsim_env):
    """The request runs in the worker's thread, but its SQL is the server's: a crash drawn for the
    worker's next I/O must not fire inside Airflow's route (it did: 'No response returned')."""
    from xcomsim.scheduler import interception

    interception.install()
    seen: list[str] = []

    def crash_on_sql(label, call):
        seen.append(label)
        if label.startswith("sql"):
            raise _Crash("a crash inside the server")
        return call()

    client = execution_api.client()
    interception.set_fault(crash_on_sql)
    interception.set_hook(lambda label, preemptible: seen.append(label))
    try:
        assert _status(lambda: client.get("xcoms/no_dag/no_run/no_task/no_key")) == 404  # its route reads SQL
    finally:
        interception.set_fault(None)
        interception.set_hook(None)
    assert seen == []


@pytest.mark.xcomsim(run_timeout=4)
def test_a_route_that_hangs_ends_at_the_run_timeout_naming_the_task(xcomsim_env, monkeypatch: pytest.MonkeyPatch):
    """The timeout's signal lands inside a route served inline: it must end the run as the run timeout,
    not turn into a 500 answer or starlette's 'No response returned'."""
    import time as _time
    from datetime import datetime

    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG, task

    from xcomsim.errors import DagRunStuckError
    from xcomsim.runner.dag_run import _warm_up_execution_api

    _warm_up_execution_api()
    with DAG("api_route_hangs", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def pulls(ti=None):
            return ti.xcom_pull(task_ids="pulls", key="nothing_yet")

        pulls()

    # The XCom route's query (XComModel.get_many: every supported Airflow's GET route builds it).
    monkeypatch.setattr(XComModel, "get_many", classmethod(lambda cls, *a, **k: _time.sleep(3600)))
    started = _time.monotonic()
    with pytest.raises(DagRunStuckError, match=r"run timeout of 4s; interrupted task pulls") as stuck:
        xcomsim_env.run_dag(dag)
    assert _time.monotonic() - started < 30
    assert "No response returned" not in str(stuck.value) and "500" not in str(stuck.value)
    monkeypatch.undo()
    assert xcomsim_env.run_dag(dag).succeeded  # the API serves the next run


def _serving_loop(client) -> asyncio.AbstractEventLoop:
    """The event loop one inline request of ``client`` ran on."""
    seen: list[asyncio.AbstractEventLoop] = []
    transport = client._transport
    original = transport._atransport.handle_async_request

    async def spy(request):
        seen.append(asyncio.get_running_loop())
        return await original(request)

    transport._atransport.handle_async_request = spy
    try:
        client.get("health")
    finally:
        transport._atransport.handle_async_request = original
    (loop,) = seen
    return loop


def test_a_thread_keeps_its_event_loop_between_requests_and_drops_it_after_an_interrupt(xcomsim_env):
    """One loop per thread, not per request; one a request was interrupted on is closed, never reused."""
    client = execution_api.client()
    first = _serving_loop(client)
    assert _serving_loop(client) is first and not first.is_running() and not first.is_closed()

    transport = client._transport
    original = transport._atransport.handle_async_request

    async def interrupted(request):
        raise KeyboardInterrupt

    transport._atransport.handle_async_request = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            client.get("health")
    finally:
        transport._atransport.handle_async_request = original
    assert first.is_closed()
    after = _serving_loop(client)
    assert after is not first and not after.is_closed()


def test_a_finished_threads_loop_is_closed_and_other_threads_get_their_own(xcomsim_env):
    import threading
    import warnings

    client = execution_api.client()
    ours = _serving_loop(client)
    theirs: list[asyncio.AbstractEventLoop] = []
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", ResourceWarning)  # a loop collected unclosed warns (and closes itself)
        thread = threading.Thread(target=lambda: theirs.append(_serving_loop(client)))
        thread.start()
        thread.join(timeout=30)
        (loop,) = theirs
        assert loop is not ours and loop.is_closed()
    assert not [w for w in warned if "unclosed event loop" in str(w.message)]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_process_neither_uses_nor_closes_the_loop_it_inherited(xcomsim_env):
    """Airflow's supervisor forks task processes: the parent's epoll instance is shared with the child.

    The child only asks for the loop it would serve on (no request: a forked copy of a threaded
    process should do little), and every wait on it is bounded.
    """
    import os
    import select
    import signal
    import time

    client = execution_api.client()
    parent = _serving_loop(client)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a loop of its own, then leave at once
        try:
            loop = execution_api._LOOPS.take()
            os.write(write, b"own" if loop is not parent and not loop.is_closed() else b"inherited")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert select.select([read], [], [], 30)[0], "the forked child did not answer within 30 s"
        said = os.read(read, 16)
    finally:
        os.close(read)
        deadline = time.monotonic() + 30
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
    assert said == b"own"
    assert _serving_loop(client) is parent and not parent.is_closed()


def _starlette_app_with_middleware():
    """A small Starlette app whose BaseHTTPMiddleware exercises every part of ``call_next`` a dispatch can see."""
    import contextvars

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    seen_by_app = contextvars.ContextVar("seen_by_app", default="unset")

    class Probe(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            if request.url.path == "/echo":
                await request.body()  # read here: the endpoint must still get it
            try:
                response = await call_next(request)
            except ValueError as exc:
                return PlainTextResponse(f"caught {exc}", status_code=418)
            response.headers["x-probe"] = f"context after call_next: {seen_by_app.get()}"
            return response

    async def echo(request):
        return PlainTextResponse((await request.body()).decode())

    async def context(request):
        seen_by_app.set("set by the app")
        return JSONResponse({"in_app": seen_by_app.get()})

    async def fails(request):
        raise ValueError("from the endpoint")

    async def silent(scope, receive, send):  # an ASGI app that never answers
        return None

    routes = [Route("/echo", echo, methods=["POST"]), Route("/context", context), Route("/fails", fails),
              Route("/silent", silent)]  # fmt: skip
    return Starlette(routes=routes, middleware=[Middleware(Probe)])


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "starlette"])
def test_a_middlewares_dispatch_sees_what_starlettes_call_next_gives_it(inline: bool):
    """Served inline, ``call_next`` skips Starlette's task group and streams; a dispatch must not see a difference."""
    import httpx

    execution_api._install_inline_threadpool()
    app = _starlette_app_with_middleware()
    calls: list[str] = []
    original = execution_api._original_base_http_call

    async def counted(*args):
        calls.append("starlette")
        await original(*args)

    async def requests():
        execution_api._INLINE.set(inline)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            echo = await client.post("/echo", content=b"the body")
            context = await client.get("/context")
            fails = await client.get("/fails")
            silent = await client.get("/silent")
        return echo, context, fails, silent

    execution_api._original_base_http_call = counted
    try:
        echo, context, fails, silent = asyncio.run(requests())
    finally:
        execution_api._original_base_http_call = original
    assert (echo.status_code, echo.text) == (200, "the body")
    assert context.json() == {"in_app": "set by the app"}
    assert context.headers["x-probe"] == "context after call_next: unset"  # the app's context stays its own
    assert (fails.status_code, fails.text) == (418, "caught from the endpoint")
    assert silent.status_code == 500  # "No response returned." raised in the middleware
    assert calls == ([] if inline else ["starlette"] * 4)


def test_airflows_middleware_answers_alike_inline_and_through_starlette(xcomsim_env):
    """Airflow's own app: the same status, body and headers (the correlation id echoed by its middleware)."""
    import httpx
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    client = execution_api.client()
    paths = ["health", "xcoms/no_dag/no_run/no_task/no_key"]
    headers = {"correlation-id": "xcomsim-test-42", **{k: v for k, v in client.headers.items() if k.lower() in
                                                      ("airflow-api-version", "authorization")}}  # fmt: skip

    async def through_starlette():
        transport = httpx.ASGITransport(app=in_process_api_server().app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as plain:
            return [await plain.get(path, headers=headers) for path in paths]

    def shown(response):
        kept = {k: v for k, v in response.headers.items() if k.lower() not in ("date", "content-length")}
        return response.status_code, response.content, kept

    inline = [client._transport.handle_request(client.build_request("GET", path, headers=headers)) for path in paths]
    plain = asyncio.run(through_starlette())
    assert [shown(r) for r in inline] == [shown(r) for r in plain]
    assert [r.status_code for r in inline] == [200, 404]
    from airflow.api_fastapi.execution_api import app

    if hasattr(app, "CorrelationIdMiddleware"):  # Airflow 3.2+ echoes it (3.1's app has only the token middleware)
        assert all(r.headers.get("correlation-id") == "xcomsim-test-42" for r in inline)


class _Timeout(BaseException):  # as the run timeout
    pass


@pytest.mark.parametrize("interrupt", [_Timeout, KeyboardInterrupt], ids=["run-timeout", "ctrl-c"])
def test_an_interrupt_in_a_route_behind_middleware_reaches_the_caller_and_leaves_no_task_behind(caplog, interrupt):
    """The run timeout or Ctrl-C inside a route: the caller gets it, the loop is dropped, asyncio logs nothing
    about tasks left pending or exceptions never retrieved, and the next request is served. (asyncio raises a
    KeyboardInterrupt straight out of the loop, leaving the tasks above the route unfinished.)"""
    import gc
    import logging

    import httpx
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    class Passes(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            return await call_next(request)

    async def stops(request):
        raise interrupt("run timeout")

    async def ok(request):
        return PlainTextResponse("served")

    app = Starlette(routes=[Route("/stops", stops), Route("/ok", ok)], middleware=[Middleware(Passes)] * 2)
    transport = execution_api.InlineTransport(httpx.ASGITransport(app=app, raise_app_exceptions=False), None)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with pytest.raises(interrupt, match="run timeout"):
            transport.handle_request(httpx.Request("GET", "http://test/stops"))
        assert execution_api._LOOPS.owned is None  # the loop it ran on is not kept
        gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert transport.handle_request(httpx.Request("GET", "http://test/ok")).text == "served"
