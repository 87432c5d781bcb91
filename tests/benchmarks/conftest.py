"""The benchmark suite: collected only when asked for.

``pytest`` (testpaths tests + scenarios) must not run benchmarks, so this
folder is skipped unless ``--benchmark-only`` is given or a path inside it is
named on the command line::

    pytest --xcomsim --benchmark-only tests/benchmarks --benchmark-json=bench.json

``XCOMSIM_BENCH_ROUNDS`` (timed rounds per latency benchmark) and
``XCOMSIM_BENCH_RUNS`` (DAG runs per footprint benchmark) override the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent

# Timed rounds per payload size: enough for a p99 at the small sizes, few at 16 MiB.
DEFAULT_ROUNDS = {"1KiB": 100, "64KiB": 50, "1MiB": 20, "16MiB": 3}
DEFAULT_RUNS = 10


def asked_for(config: pytest.Config) -> bool:
    """True under ``--benchmark-only`` or when a command-line path lies in this folder."""
    if config.getoption("benchmark_only", default=False):
        return True
    invoked_from = Path(config.invocation_params.dir)
    for arg in config.args:  # positional paths (testpaths when none were given)
        path = Path(arg.split("::")[0])
        path = (path if path.is_absolute() else invoked_from / path).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return None if asked_for(config) else True


@pytest.fixture
def rounds(size_name: str) -> int:
    """Timed rounds for this payload size."""
    return int(os.environ.get("XCOMSIM_BENCH_ROUNDS") or DEFAULT_ROUNDS[size_name])


@pytest.fixture
def runs() -> int:
    """DAG runs per footprint benchmark."""
    return int(os.environ.get("XCOMSIM_BENCH_RUNS") or DEFAULT_RUNS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from xcomsim.bench.latency import PAYLOAD_SIZES, standard_setups

    if "setup" in metafunc.fixturenames:
        config = metafunc.config
        custom = config.getoption("xcomsim_backend", default=None) or config.getini("xcomsim_backend")
        setups = standard_setups(custom or None)
        metafunc.parametrize("setup", setups, ids=[s.name for s in setups])
    if "size_name" in metafunc.fixturenames:
        metafunc.parametrize("size_name", list(PAYLOAD_SIZES))


@pytest.fixture
def size(size_name: str) -> int:
    from xcomsim.bench.latency import PAYLOAD_SIZES

    return PAYLOAD_SIZES[size_name]


@pytest.fixture
def bench_env(xcomsim_simulation: Any, setup: Any) -> Iterator[Any]:
    """A fresh environment with ``setup``'s backend and configuration."""
    with xcomsim_simulation.environment(backend=setup.backend, config=dict(setup.config)) as env:
        yield env


@pytest.fixture
def probe(bench_env: Any) -> Iterator[Any]:
    from xcomsim.bench.latency import probes

    with probes(bench_env) as (one,):
        yield one


@pytest.fixture
def record(benchmark: Any) -> Any:
    """``record(setup=None, **info)``: label the JSON entry, and put p50/p95/p99 in ``extra_info``.

    pytest-benchmark keeps every round's time but reports no tail percentiles.
    """
    from xcomsim.bench.stats import Summary

    def finish(setup: Any = None, **info: Any) -> None:
        if setup is not None:
            benchmark.extra_info.update(backend=setup.backend, setup=setup.name, store=setup.store)
        benchmark.extra_info.update(info)
        if benchmark.stats is None or not benchmark.stats.stats.data:  # --benchmark-disable
            return
        summary = Summary.of(benchmark.stats.stats.data).as_ms()
        benchmark.extra_info.update({k: summary[k] for k in ("p50_ms", "p95_ms", "p99_ms")})

    return finish
