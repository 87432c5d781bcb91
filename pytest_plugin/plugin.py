"""Entry point registered under ``pytest11``.

Inert unless ``--xcomsim`` (or ``xcomsim = true`` in the ini) is given: it then
only adds its options and marker. Neither Airflow nor the heavy parts of
xcomsim are imported at module level; each hook imports what it needs inside.
"""

from __future__ import annotations

import pytest

_OPTIONS = [
    # (name, ini name, help)
    ("backend", "xcomsim_backend", "dotted path of the XCom backend class under test"),
    ("dags", "xcomsim_dags", "folder of DAG files that run_dag finds by DAG id (default: an empty temp folder)"),
    ("bucket", "xcomsim_bucket", "S3 bucket created for every test (default: xcomsim)"),
    ("run-timeout", "xcomsim_run_timeout", "seconds one DAG run may take before it is reported stuck"),
    ("profile", "xcomsim_profile", "Hypothesis profile: ci (derandomised), dev, thorough (default: ci under CI, else dev)"),
    ("hypothesis-db", "xcomsim_hypothesis_db", "folder where failing examples are kept for replay (dev, thorough)"),
    ("conformance", "xcomsim_conformance", "run the conformance kit on the backend: auto (when --xcomsim-backend is given), on, off"),
    ("db", "xcomsim_db", "PostgreSQL instead of in-memory SQLite: postgresql+psycopg://user:password@host:5432/postgres"),
    ("redis", "xcomsim_redis", "a real Redis instead of fakeredis: redis://host:6379/N (DB index N, N+k for xdist worker k)"),
    ("s3-endpoint", "xcomsim_s3_endpoint", "an S3 endpoint instead of the embedded moto: http://[KEY:SECRET@]host:port"),
    ("probe-max", "xcomsim_probe_max", "the kit's discovery probes values up to this many bytes (default 16MiB+1)"),
    ("report", "xcomsim_report", "write one self-contained HTML page of the run (DAG runs, verdicts) to this path; a path ending in .json: the same as JSON"),
]
_FIXTURES = {"xcomsim_env", "run_dag", "xcomsim_simulation"}
_STATE = pytest.StashKey[object]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xcomsim", "xcomsim: simulated Airflow environment for XCom tests")
    group.addoption("--xcomsim", action="store_true", default=None, help="turn the xcomsim harness on")
    parser.addini("xcomsim", "turn the xcomsim harness on", type="bool", default=False)
    for name, ini, text in _OPTIONS:
        group.addoption(f"--xcomsim-{name}", dest=ini, default=None, help=text)
        parser.addini(ini, text, default="")
    group.addoption("--xcomsim-replay", action="store_true", default=False,
                    help="re-run only the failing examples kept in the Hypothesis database, generate none")  # fmt: skip


def _enabled(config: pytest.Config) -> bool:
    flag = config.getoption("xcomsim", default=None)
    return bool(flag) if flag is not None else bool(config.getini("xcomsim"))


def _command_line(config: pytest.Config, ini: str) -> object:
    # Before pytest_configure only the known-args namespace holds the command line.
    early = vars(getattr(config, "known_args_namespace", None) or {})
    return config.getoption(ini, default=None) or early.get(ini)


def _option_values(config: pytest.Config) -> dict[str, object]:
    values = {ini: _command_line(config, ini) or config.getini(ini) for _, ini, _ in _OPTIONS}
    return {
        "backend": values["xcomsim_backend"],
        "dags_folder": values["xcomsim_dags"],
        "bucket": values["xcomsim_bucket"],
        "run_timeout": values["xcomsim_run_timeout"],
        "db": values["xcomsim_db"],
        "redis": values["xcomsim_redis"],
        "s3_endpoint": values["xcomsim_s3_endpoint"],
        # A path typed on the command line is relative to where pytest was started; one in the ini to the rootdir.
        "dags_typed": bool(_command_line(config, "xcomsim_dags")),
    }


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # Before any conftest runs: a conftest that imports Airflow must already see the private home.
    if _enabled(early_config):
        from pytest_plugin import session

        early_config.stash[_STATE] = session.start(early_config, _option_values(early_config))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "xcomsim(**settings): per-test xcomsim settings, e.g. backend='pkg.mod.MyXCom', bucket='b'",
    )
    config.addinivalue_line(
        "markers", "xcomsim_guarantee(name): the guarantee a conformance test checks (for the verdict table)"
    )
    if not _enabled(config):
        return
    from pytest_plugin import fixtures, report, session

    if _STATE not in config.stash:
        config.stash[_STATE] = session.start(config, _option_values(config))
    session.check_backend(config, config.stash[_STATE].settings.backend)  # type: ignore[attr-defined]
    session.activate_profile(config.getoption("xcomsim_profile") or config.getini("xcomsim_profile"),
                             session.hypothesis_db(config, config.getoption("xcomsim_hypothesis_db"),
                                                   config.getini("xcomsim_hypothesis_db")),
                             replay=config.getoption("xcomsim_replay"))  # fmt: skip
    session.quiet_airflow_internals(config)
    session.freeze_heap_at_exit()
    if session.conformance_suite(config.getoption("xcomsim_conformance") or config.getini("xcomsim_conformance"),
                                 backend_given=bool(config.getoption("xcomsim_backend"))):  # fmt: skip
        from pytest_plugin import kit_items

        kit_items.want(config)
        config.pluginmanager.register(kit_items, "xcomsim-kit-items")
    config.pluginmanager.register(fixtures, "xcomsim-fixtures")
    config.pluginmanager.register(report, "xcomsim-report")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _enabled(session.config):
        from pytest_plugin import session as harness

        harness.say_if_airflow_unsupported(session.config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _enabled(config):
        return
    skip = pytest.mark.skip(reason="needs the xcomsim harness: run pytest --xcomsim (or set xcomsim = true)")
    for item in items:
        if _FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("xcomsim"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    if call.excinfo is not None and _enabled(item.config):
        from pytest_plugin import session

        session.trim_internal_frames(item.config, call)
    return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _enabled(session.config):
        from pytest_plugin import session as harness

        harness.skip_idle_hypothesis_summary(session.config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _enabled(config) and (config.getoption("xcomsim_report") or config.getini("xcomsim_report")):
        from pytest_plugin import session

        session.write_html_report(config, terminalreporter)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.home.close()  # type: ignore[attr-defined]
