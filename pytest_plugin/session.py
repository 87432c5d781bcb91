"""Turning pytest's configuration into xcomsim objects, with bad input shown as short errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xcomsim.env.airflow_home import AirflowHome
from xcomsim.errors import XcomsimError
from xcomsim.settings import HarnessSettings, settings_from_options


RUNS = pytest.StashKey[list]()  # DAG run results for the HTML report, when one is asked for


@dataclass
class HarnessState:
    """What the plugin keeps for the session: settings, and the home made before Airflow loads."""

    settings: HarnessSettings
    home: AirflowHome


def start(config: pytest.Config, values: dict[str, object]) -> HarnessState:
    from xcomsim.env.environment import check_services
    from xcomsim.env.xcom_backend import search_also

    invocation = Path(config.invocation_params.dir)
    dags_base = invocation if values.pop("dags_typed", False) else None
    search_also([Path(str(config.rootpath)), invocation])  # a backend module in the project folder
    try:
        settings = settings_from_options(values, Path(str(config.rootpath)), dags_base)
        check_services(settings)  # real servers: a clear error now, not one per test
    except XcomsimError as exc:
        raise pytest.UsageError(f"xcomsim: {exc}") from None
    return HarnessState(settings, AirflowHome(settings.dags_folder))


def activate_profile(name: str | None, database: str | None, replay: bool = False) -> None:
    """Load the Hypothesis profile once Hypothesis is imported (now, if it is already).

    Importing Hypothesis costs about 1 s; a session whose tests never use it (a test module
    imports it to define a property, a fixture when it runs one) does not pay it. A bad name is
    a usage error at once.
    """
    from wrapt import register_post_import_hook

    from xcomsim import profiles

    try:
        checked = profiles.checked(name or None)
    except XcomsimError as exc:
        raise pytest.UsageError(f"xcomsim: {exc}") from None
    register_post_import_hook(lambda _: profiles.activate(checked, database or None, replay=replay), "hypothesis")


_EXIT_FREEZE: list[bool] = []


def freeze_heap_at_exit() -> None:
    """At interpreter exit, freeze the heap out of CPython's final garbage collections.

    A session that imported Airflow ends with half a million objects, and finalisation collects
    over all of them (about 0.25 s a pass on 2 cores). pytest's own unconfigure has collected twice
    just before (to report unraisable exceptions), so the session's cyclic garbage is finalised
    already (a ``__del__`` in a cycle runs: tested); the frozen rest is freed with its modules.
    """
    import atexit
    import gc

    if not _EXIT_FREEZE:
        _EXIT_FREEZE.append(True)
        atexit.register(gc.freeze)


def skip_idle_hypothesis_summary(config: pytest.Config) -> None:
    """Leave Hypothesis's terminal summary out of a session that never imported Hypothesis.

    Its plugin imports Hypothesis in ``pytest_terminal_summary`` (about 1 s) to report what no
    test could have produced: no property ran, so there are no statistics, failing examples or
    observations. Called from ``pytest_sessionfinish``, before the terminal reporter asks for
    summaries; any session that imported Hypothesis keeps its summary.
    """
    import sys

    plugin = config.pluginmanager.get_plugin("hypothesispytest")
    if plugin is not None and "hypothesis" not in sys.modules:
        config.pluginmanager.unregister(plugin)


def hypothesis_db(config: pytest.Config, typed: str | None, ini: str | None) -> str | None:
    """The example database folder: typed on the command line, from where pytest was started; from the ini, the rootdir."""
    if typed:
        return str(Path(config.invocation_params.dir) / Path(typed).expanduser())
    if ini:
        return str(Path(str(config.rootpath)) / Path(ini).expanduser())
    return None


def quiet_airflow_internals(config: pytest.Config) -> None:
    """Ignore warnings Airflow's own dependencies raise (in every test too); the user's are untouched."""
    from xcomsim import noise

    noise.ignore_airflow_warnings()
    for line in noise.warning_filters():
        config.addinivalue_line("filterwarnings", line)


def say_if_airflow_unsupported(config: pytest.Config) -> None:
    """One line at session start when the installed Airflow is outside the range xcomsim supports."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller says it once
        return
    from xcomsim.compat.support import unsupported_line

    line = unsupported_line()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if line and reporter is not None:
        reporter.write_line(line, yellow=True, bold=True)


def trim_internal_frames(config: pytest.Config, call: pytest.CallInfo[None]) -> None:
    """Hide the task SDK's and its HTTP stack's frames in a failure (``--full-trace`` keeps them)."""
    if call.excinfo is None or config.getoption("fulltrace", False):
        return
    from xcomsim.noise import trim_traceback

    exc = call.excinfo.value
    if trim_traceback(exc):
        call.excinfo = pytest.ExceptionInfo.from_exception(exc)


def record_run(config: pytest.Config, test: str, result: object) -> None:
    if config.getoption("xcomsim_report") or config.getini("xcomsim_report"):
        from xcomsim.html_report import run_entry

        config.stash.setdefault(RUNS, []).append(run_entry(test, result))


def report_path(config: pytest.Config) -> Path:
    """The HTML report's path: typed on the command line, from where pytest was started; from the ini, the rootdir."""
    typed = config.getoption("xcomsim_report")
    base = Path(config.invocation_params.dir) if typed else Path(str(config.rootpath))
    return base / Path(str(typed or config.getini("xcomsim_report"))).expanduser()


def write_html_report(config: pytest.Config, terminal: pytest.TerminalReporter) -> None:
    from xcomsim import html_report

    from pytest_plugin import report

    verdicts = report.collected()  # the conformance kit's, one Verdicts per backend
    runs = [{**run, "outcome": report.outcome(run["test"])} for run in config.stash.get(RUNS, [])]
    data = {
        "title": f"xcomsim report: {Path(str(config.rootpath)).name}",
        "runs": runs,
        "verdicts": html_report.verdict_entries(verdicts),
    }
    written = html_report.write(report_path(config), data)
    terminal.write_line(f"xcomsim report: {written}")


def conformance_suite(mode: str | None, backend_given: bool) -> bool:
    """Whether to collect the kit's tests as well (``auto``: when a backend is named on the command line)."""
    mode = (mode or "auto").strip().lower()
    if mode not in ("auto", "on", "off"):
        raise pytest.UsageError(f"xcomsim: --xcomsim-conformance={mode!r}; use auto, on or off")
    return mode == "on" or (mode == "auto" and backend_given)


def check_backend(config: pytest.Config, backend: str) -> None:
    """A backend the user named must import: one line before anything is collected, not a table of "not run"."""
    from xcomsim.env.xcom_backend import load_backend

    if not (config.getoption("xcomsim_backend", None) or config.getini("xcomsim_backend")):
        return  # the default, xcomsim's own
    try:
        load_backend(backend)
    except XcomsimError as exc:
        raise pytest.UsageError(f"xcomsim: {exc} (the session's backend, from --xcomsim-backend or xcomsim_backend)") from None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Show harness errors (bad backend, missing DAG, ...) as one line, not an Airflow traceback."""
    try:
        yield
    except XcomsimError as exc:
        raise pytest.fail.Exception(f"xcomsim: {exc}", pytrace=False) from None
