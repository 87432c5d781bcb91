"""Airflow's in-process Execution API, with each request marked as one holder of the metadata DB.

Tasks run in-process reach the metadata DB through Airflow's Execution API, served
in this process by ``InProcessExecutionAPI`` (an event loop thread plus FastAPI's
thread pool). FastAPI runs a request's route on one pool thread and its session
dependency's teardown (the commit) on another call, after the route returned; the
first thread may meanwhile serve the next request. The SQLite tier's leased pool
must therefore tell requests apart, not threads: every request here runs with
its own ``metadata_db.REQUEST`` token, which the pool threads copy into each call
they make for it.

Every xcomsim path to the API goes through ``client()`` or ``mark_requests()``; the
app is Airflow's one per process (``in_process_api_server``), marked once.
"""

from __future__ import annotations

from typing import Any

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


def mark_requests() -> None:
    """Wrap the in-process API app's middleware stack once (building it as Starlette would)."""
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    app = in_process_api_server().app
    if not isinstance(app.middleware_stack, _PerRequest):
        app.middleware_stack = _PerRequest(app.middleware_stack or app.build_middleware_stack())


def client(dag: Any = None) -> Any:
    """Airflow's in-process API client (``InProcessTestSupervisor._api_client``), requests marked."""
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    mark_requests()
    return InProcessTestSupervisor._api_client(dag)
