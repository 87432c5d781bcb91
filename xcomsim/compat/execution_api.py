"""Airflow's in-process Execution API server: one per process, and started, on every supported Airflow.

- One per process. From Airflow 3.3 ``supervisor.in_process_api_server()`` is cached: every
  caller shares one app. In 3.1 and 3.2 each call builds a new ``InProcessExecutionAPI`` (and
  cadwyn a new app, seconds of work), so the DAG-bag override ``_api_client`` sets, and
  anything xcomsim does to the app, would land on an app no request reaches. ``api_server()``
  caches Airflow's own function where it is not cached already, in its module, so Airflow's
  callers (``dag.test()``, ``_api_client``) and xcomsim share one app there too, as on 3.3.
- Started. The app's lifespan (its svcs registry and JWT services) is entered when its
  ``transport`` is first built. 3.3 waits for that; 3.1 and 3.2 only schedule it on a2wsgi's
  loop, so a request served at once (inline, by xcomsim) could find no ``svcs_registry`` and
  answer HTTP 500. ``started_transport()`` waits, bounded, until the registry is there.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

STARTUP_TIMEOUT = 30.0  # seconds for the app's lifespan to start (it does no I/O: milliseconds)


def api_server() -> Any:
    """The process's ``InProcessExecutionAPI`` (Airflow's own function, cached where it is not)."""
    from airflow.sdk.execution_time import supervisor

    if not hasattr(supervisor.in_process_api_server, "cache_info"):  # Airflow 3.1, 3.2
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)
        _cached_here.append(supervisor.in_process_api_server)
    return supervisor.in_process_api_server()


_cached_here: list[Any] = []


def airflow_keeps_one_app() -> bool:
    """Whether the installed Airflow itself keeps one in-process API server per process (3.3+)."""
    from airflow.sdk.execution_time import supervisor

    function = supervisor.in_process_api_server
    return hasattr(function, "cache_info") and function not in _cached_here


def started_transport(api: Any) -> Any:
    """``api.transport`` (Airflow's own), once the app's lifespan has started."""
    from xcomsim.errors import ServiceError

    transport = api.transport
    state = api.app.state
    if getattr(state, "svcs_registry", None) is not None:
        return transport
    loop = getattr(getattr(transport, "app", None), "loop", None)  # a2wsgi's loop runs the lifespan
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while getattr(state, "svcs_registry", None) is None:
        left = deadline - time.monotonic()
        if loop is None or left <= 0:
            raise ServiceError(
                f"xcomsim: Airflow's in-process Execution API did not start within {STARTUP_TIMEOUT:g}s "
                "(its lifespan set no svcs registry)"
            )
        # The lifespan's start-up runs without pausing once scheduled: a turn of its loop after it is done.
        turn = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop)
        try:
            turn.result(timeout=left)
        except TimeoutError:  # the loop did not turn in time: the deadline above says so
            turn.cancel()
    return transport
