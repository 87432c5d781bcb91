"""On the installed Airflow: which version differences apply, and that every speed-up of the inline
path is in force (none falls back to Airflow's own transport on any supported version).

Run in every cell of CI's Airflow matrix (``.ci/airflow-matrix``), so each cell says, for its
version, which differences xcomsim met and that the same fast path served the run.
"""

from __future__ import annotations

import importlib
import sys
from datetime import datetime

import pytest

from xcomsim import compat
from xcomsim.compat import names


def _dag():
    from airflow.sdk import DAG, task

    with DAG("compat_probe", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def produce():
            return {"rows": 3}

        @task
        def consume(payload):
            return payload["rows"] * 2

        consume(produce())
    return dag


def test_each_difference_says_whether_it_applies_here(xcomsim_env, capsys):
    """Every probe answers on this Airflow (none raises), and the answers agree with each other: the
    task SDK's own homes (3.2+) and the 3.3-only changes come in the order Airflow made them."""
    found = dict((d.name, applies) for d, applies in compat.differences())
    with capsys.disabled():
        import airflow

        applying = [name for name, applies in found.items() if applies]
        sys.stdout.write(f"\nAirflow {airflow.__version__}: differences met: {', '.join(applying) or 'none'}\n")
    assert set(found) == {d.name for d in compat.DIFFERENCES}
    if found["task-sdk-homes"]:  # an Airflow before 3.2 has none of 3.3's changes either
        assert found["supervise-task-name"] and found["run-task-client"] and found["api-server-per-call"]
    if not found["run-task-client"]:  # 3.3+ has the task SDK's own homes too
        assert not found["task-sdk-homes"] and not found["supervise-task-name"]


@pytest.mark.parametrize("name", sorted(names.HOMES))
def test_every_moved_name_resolves_to_the_installed_airflows_object(name):
    obj, where = names.home(name)
    module, _, attribute = where.rpartition(".")
    assert getattr(importlib.import_module(module), attribute) is obj
    assert getattr(names, name) is obj


def test_a_name_with_no_home_is_a_clear_import_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(names.HOMES, "nowhere", (("airflow.no_such_module", "x", "never"), ("airflow", "no_such_name", "never")))
    with pytest.raises(ImportError, match="the installed Airflow has no nowhere .*airflow.no_such_module, airflow.no_such_name"):
        names.home("nowhere")


def test_a_home_that_fails_inside_is_not_taken_for_a_moved_name(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """A module that exists but cannot import (a missing dependency of its own) is an error, not 'moved'."""
    (tmp_path / "xcomsim_broken_home.py").write_text("import xcomsim_no_such_dependency\nvalue = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(names.HOMES, "broken", (("xcomsim_broken_home", "value", "x"), ("airflow", "__name__", "x")))
    with pytest.raises(ModuleNotFoundError, match="xcomsim_no_such_dependency"):
        names.home("broken")


def test_a_dag_run_takes_every_fast_path_on_this_airflow(run_dag, monkeypatch: pytest.MonkeyPatch):
    """The speed-ups of the inline path, each seen working in one real run: requests served inline
    (none through Airflow's own transport), BaseHTTPMiddleware's call_next inline, FastAPI's
    dependency analysis remembered, the app built for the task SDK's version only, the task
    runner's adapters kept, and tasks run with xcomsim's client (no app of Airflow's own)."""
    from airflow.sdk.execution_time import task_runner

    from xcomsim.compat.execution_api import api_server
    from xcomsim.env import execution_api

    seen = {"inline": 0, "fallback": 0, "call_next inline": 0, "memo hits": 0}
    handle = execution_api.InlineTransport.handle_request

    def counting_handle(self, request):
        inline = self._fallback.handle_request
        self._fallback.handle_request = lambda r: seen.__setitem__("fallback", seen["fallback"] + 1) or inline(r)
        try:
            seen["inline"] += 1
            return handle(self, request)
        finally:
            del self._fallback.handle_request

    original_call = execution_api._base_http_middleware_call

    async def counting_call(self, scope, receive, send):
        if scope["type"] == "http" and execution_api._INLINE.get():
            seen["call_next inline"] += 1
        await original_call(self, scope, receive, send)

    from starlette.middleware.base import BaseHTTPMiddleware

    monkeypatch.setattr(execution_api.InlineTransport, "handle_request", counting_handle)
    monkeypatch.setattr(BaseHTTPMiddleware, "__call__", counting_call)
    monkeypatch.setattr(execution_api, "_base_http_middleware_call", counting_call)
    memo_before = len(execution_api._DEPENDANTS)
    app_before = api_server().app

    result = run_dag(_dag())

    assert result.succeeded, result.describe()
    assert seen["inline"] > 0 and seen["fallback"] == 0, seen
    assert seen["call_next inline"] > 0, seen
    assert len(execution_api._DEPENDANTS) > 0 and len(execution_api._DEPENDANTS) >= memo_before
    assert api_server().app is app_before, "a new Execution API app was built during the run"
    from airflow.sdk.api.datamodels._generated import API_VERSION

    assert list(app_before.router.versioned_routers) == [API_VERSION], "the app was built for every API version"
    assert getattr(task_runner.TypeAdapter, "__xcomsim_original__", None) is not None


def test_airflows_own_callers_share_the_one_app(xcomsim_env):
    """``dag.test()``'s ``_api_client`` sets its DAG-bag override on the app xcomsim serves, on every
    version (3.1 and 3.2 would build a new app per call)."""
    from airflow.api_fastapi.common.dagbag import dag_bag_from_app
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor, in_process_api_server

    from xcomsim.compat.execution_api import api_server

    InProcessTestSupervisor._api_client(_dag())
    assert in_process_api_server() is api_server()
    assert dag_bag_from_app in api_server().app.dependency_overrides


def test_the_apps_lifespan_has_started_before_an_inline_request(xcomsim_env):
    from xcomsim.compat.execution_api import api_server, started_transport

    started_transport(api_server())
    assert api_server().app.state.svcs_registry is not None
    assert execution_api_client_health() == {"status": "healthy"}


def execution_api_client_health() -> object:
    from xcomsim.env import execution_api

    return execution_api.client().get("health").json()


def test_a_lifespan_that_never_starts_is_a_bounded_clear_error(monkeypatch: pytest.MonkeyPatch):
    """Waiting for the registry ends: a transport whose loop never runs the start-up is reported."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from xcomsim.compat import execution_api
    from xcomsim.errors import ServiceError

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        api = SimpleNamespace(transport=SimpleNamespace(app=SimpleNamespace(loop=loop)),
                              app=SimpleNamespace(state=SimpleNamespace()))  # fmt: skip
        monkeypatch.setattr(execution_api, "STARTUP_TIMEOUT", 0.3)
        with pytest.raises(ServiceError, match="did not start within 0.3s"):
            execution_api.started_transport(api)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_an_airflow_outside_the_supported_range_gets_one_line_naming_it(monkeypatch: pytest.MonkeyPatch):
    from xcomsim.compat import support

    monkeypatch.setattr(support, "supported_airflow", lambda: "!=3.2.0,<=3.3.2,>=3.1.8")
    monkeypatch.setattr(support, "installed_airflow", lambda: "3.0.6")
    line = support.unsupported_line()
    assert line is not None and "\n" not in line
    assert line.startswith("xcomsim: Airflow 3.0.6 is not supported (xcomsim supports apache-airflow>=3.1.8,<=3.3.2,!=3.2.0)")
    monkeypatch.setattr(support, "installed_airflow", lambda: "3.2.0")
    assert "3.2.0 is not supported" in support.unsupported_line()
    monkeypatch.setattr(support, "installed_airflow", lambda: "3.3.2")
    assert support.unsupported_line() is None


def test_the_session_says_so_at_its_start(clean_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Through the plugin: one line at session start, once, and the tests still run."""
    clean_pytester.makeconftest(
        "from xcomsim.compat import support\nsupport.installed_airflow = lambda: '3.0.6'\n"
    )
    clean_pytester.makepyfile("def test_nothing():\n    pass\n")
    result = clean_pytester.runpytest_subprocess("--xcomsim", "-q", "-p", "no:randomly")
    lines = [line for line in result.outlines if "is not supported" in line]
    assert len(lines) == 1 and "xcomsim supports apache-airflow>=" in lines[0], result.outlines
    assert result.ret == 0


def test_every_difference_is_documented():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "compat.md").read_text()
    assert [d.name for d in compat.DIFFERENCES if f"`{d.name}`" not in page] == []
