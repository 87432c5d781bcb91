"""The conformance verdict at the end of the run, and a replay hint on failed properties: hooks only."""

from __future__ import annotations

from typing import Any

import pytest

from xcomsim.conformance.verdict import Verdicts

_verdicts: dict[str, Verdicts] = {}
_HYPOTHESIS_FAILURE = ("Falsifying example", "Failing test case", "reproduce_failure")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    if report.failed and any(mark in report.longreprtext for mark in _HYPOTHESIS_FAILURE):
        from xcomsim.profiles import replay_hint

        report.sections.append(("xcomsim: replay", replay_hint(item.nodeid)))
    marker = item.get_closest_marker("xcomsim_guarantee")
    if marker is not None:
        env = getattr(item, "funcargs", {}).get("xcomsim_env")
        backend = env.backend if env is not None else None
        report.xcomsim_guarantee = (  # type: ignore[attr-defined]
            marker.args, f"{backend.__module__}.{backend.__qualname__}" if backend else "?"
        )
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tagged = getattr(report, "xcomsim_guarantee", None)
    if tagged is None or (report.when != "call" and report.passed):
        return
    names, backend = tagged
    verdicts = _verdicts.setdefault(backend, Verdicts(backend))
    if report.skipped and hasattr(report, "wasxfail"):  # an expected failure is still a broken guarantee
        verdicts.record_failure(names, str(report.longrepr))
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        for name in names:
            verdicts.record(name, "skipped", reason.removeprefix("Skipped: "))
    elif report.failed:
        verdicts.record_failure(names, report.longreprtext)
    else:
        for name in names:
            verdicts.record(name, "passed")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for verdicts in _verdicts.values():
        terminalreporter.write_sep("=", "xcomsim conformance")
        terminalreporter.write_line(verdicts.table())
