"""Fixtures, registered only when the harness is on. Each is a thin call into xcomsim."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_plugin.plugin import _STATE
from pytest_plugin.session import record_run, reported
from xcomsim.env import Environment, Simulation
from xcomsim.noise import give_warnings_back


@pytest.fixture(scope="session")
def xcomsim_simulation(pytestconfig: pytest.Config) -> Iterator[Simulation]:
    """The session-wide world: private Airflow home, migrated template DB, Redis and S3 servers."""
    state = pytestconfig.stash[_STATE]
    with reported():
        simulation = Simulation(state.settings, home=state.home)  # type: ignore[attr-defined]
    give_warnings_back()
    yield simulation
    simulation.close()


@pytest.fixture
def xcomsim_env(request: pytest.FixtureRequest, xcomsim_simulation: Simulation) -> Iterator[Environment]:
    """This test's environment: fresh metadata DB, empty Redis, reset S3, its XCom backend installed.

    ``@pytest.mark.xcomsim(backend=..., bucket=..., run_timeout=...)`` overrides settings per test.
    """
    marker = request.node.get_closest_marker("xcomsim")
    overrides = dict(marker.kwargs) if marker else {}
    with reported():
        environment = xcomsim_simulation.environment(**overrides)
        env = environment.__enter__()
    give_warnings_back()
    try:
        yield env
    finally:
        environment.__exit__(None, None, None)


@pytest.fixture
def run_dag(request: pytest.FixtureRequest, xcomsim_env: Environment) -> Callable[..., Any]:
    """``run_dag(dag_or_dag_id, conf=None) -> DagRunResult`` in this test's environment."""

    def run(dag_or_id: Any, conf: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        with reported():
            result = xcomsim_env.run_dag(dag_or_id, conf, **kwargs)
        record_run(request.config, request.node.nodeid, result)
        return result

    return run
