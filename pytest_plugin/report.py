"""The conformance verdict at the end of the run, and a replay hint on failed properties: hooks only."""

from __future__ import annotations

from typing import Any

import pytest

from xcomsim.conformance.verdict import Verdicts, harness_problem

_verdicts: dict[str, Verdicts] = {}
_outcomes: dict[str, str] = {}
_HYPOTHESIS_FAILURE = ("Falsifying example", "Failing test case", "reproduce_failure")
_BACKEND = pytest.StashKey[str]()
_REPLAY = "xcomsim: replay"


def collected() -> list[Verdicts]:
    """The verdicts of this session so far, one per backend (what the table and the HTML report show)."""
    return list(_verdicts.values())


def _backend(item: pytest.Item) -> str:
    from xcomsim.settings import DEFAULT_BACKEND

    marker = item.get_closest_marker("xcomsim")
    given = (marker.kwargs.get("backend") if marker else None) or item.config.getoption("xcomsim_backend", None)
    return str(given or item.config.getini("xcomsim_backend") or DEFAULT_BACKEND).strip()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every guarantee a collected test will judge is listed, even if the run stops before it (``-x``)."""
    for item in session.items:
        marker = item.get_closest_marker("xcomsim_guarantee")
        if marker is not None:
            item.stash[_BACKEND] = backend = _backend(item)
            for name in marker.args:
                _verdicts.setdefault(backend, Verdicts(backend)).expect(name)


# Options whose value is a path: typed relative to where pytest was started, which the hint's ``cd`` leaves.
_PATH_OPTIONS = {"dags", "hypothesis-db"}
# Options that do not change what the replay runs: the report of the full run is not overwritten by it.
_NOT_REPLAYED = {"report"}


def _replay_command(item: pytest.Item) -> str:
    """Ready to paste: run from the rootdir with the options given on this command line.

    Every test by its node id (the kit's are collected under a folder of the rootdir, and the plugin reads
    their node ids back: ``kit_items``); a node id without a file part by ``-k``. A path option typed relative
    to a subfolder pytest was started from is given as an absolute path, so it names the same folder
    after the ``cd``.
    """
    import os
    from pathlib import Path

    from pytest_plugin.plugin import _OPTIONS
    from xcomsim.profiles import replay_hint

    config = item.config
    started = Path(config.invocation_params.dir)
    options = []
    for name, ini, _ in _OPTIONS:
        value = config.getoption(ini)
        if not value or name in _NOT_REPLAYED:
            continue
        if name in _PATH_OPTIONS and started != Path(str(config.rootpath)):
            value = os.path.normpath(started / Path(str(value)).expanduser())
        options.append(f"--xcomsim-{name}={value}")
    if item.nodeid.startswith("::") or "::" not in item.nodeid:
        parts = [p for p in item.nodeid.split("::") if p]
        target = "-k " + repr(" and ".join(p.split("[")[0] for p in parts))
    else:
        target = item.nodeid
    return replay_hint(target, options, str(config.rootpath))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    kit_test = item.get_closest_marker("xcomsim_guarantee") is not None
    if report.failed and report.when == "call" and (kit_test or any(m in report.longreprtext for m in _HYPOTHESIS_FAILURE)):
        report.sections.append((_REPLAY, _replay_command(item)))
    marker = item.get_closest_marker("xcomsim_guarantee")
    if marker is not None:
        report.xcomsim_guarantee = (marker.args, item.stash.get(_BACKEND, None) or _backend(item))  # type: ignore[attr-defined]
        if report.failed and call.excinfo is not None:
            report.xcomsim_harness = harness_problem(call.excinfo.value)  # type: ignore[attr-defined]
    return report


def outcome(nodeid: str) -> str | None:
    """A test's outcome as the terminal gives it (passed, failed, error, skipped), or None if it has not run."""
    return _outcomes.get(nodeid)


def _record_outcome(report: pytest.TestReport) -> None:
    if report.failed:
        _outcomes[report.nodeid] = "failed" if report.when == "call" else "error"
    elif report.when == "call" or report.skipped:
        _outcomes.setdefault(report.nodeid, "skipped" if report.skipped else "passed")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_outcome(report)
    tagged = getattr(report, "xcomsim_guarantee", None)
    if tagged is None:
        return
    names, backend = tagged
    verdicts = _verdicts.setdefault(backend, Verdicts(backend))
    found = dict(report.user_properties)
    if "xcomsim_discovered" in found:
        verdicts.discovered = str(found["xcomsim_discovered"])
    for name, line in (value for key, value in report.user_properties if key == "xcomsim_inherited"):
        verdicts.record_inherited(name, line)
    if report.when != "call" and report.passed:
        return
    names = tuple(found.get("xcomsim_judged", names)) if report.when == "call" else names
    if report.skipped and hasattr(report, "wasxfail"):  # an expected failure is still a broken guarantee
        verdicts.record_failure(names, str(report.longrepr))
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for name in names:
            verdicts.record(name, "skipped", reason.removeprefix("Skipped: "))
    elif report.failed and getattr(report, "xcomsim_harness", None):
        verdicts.record_harness(names, report.xcomsim_harness)  # type: ignore[attr-defined]
    elif report.failed:
        replay = next((text.strip() for title, text in report.sections if title == _REPLAY), None)
        verdicts.record_failure(names, report.longreprtext, from_model="xcomsim_judged" in found, replay=replay)
    else:
        for name in names:
            verdicts.record(name, "passed")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for verdicts in _verdicts.values():
        terminalreporter.write_sep("=", "xcomsim conformance")
        terminalreporter.write_line(verdicts.table())
