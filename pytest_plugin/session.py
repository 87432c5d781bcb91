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


@dataclass
class HarnessState:
    """What the plugin keeps for the session: settings, and the home made before Airflow loads."""

    settings: HarnessSettings
    home: AirflowHome


def start(config: pytest.Config, values: dict[str, object]) -> HarnessState:
    from xcomsim.env.environment import check_services

    try:
        settings = settings_from_options(values, Path(str(config.rootpath)))
        check_services(settings)  # real servers: a clear error now, not one per test
    except XcomsimError as exc:
        raise pytest.UsageError(f"xcomsim: {exc}") from None
    return HarnessState(settings, AirflowHome(settings.dags_folder))


def activate_profile(name: str | None, database: str | None, replay: bool = False) -> None:
    from xcomsim import profiles

    try:
        profiles.activate(name or None, database or None, replay=replay)
    except XcomsimError as exc:
        raise pytest.UsageError(f"xcomsim: {exc}") from None


def conformance_suite(mode: str | None, backend_given: bool) -> str | None:
    """The kit's test module to collect as well, or None (``auto``: when a backend is named on the command line)."""
    mode = (mode or "auto").strip().lower()
    if mode not in ("auto", "on", "off"):
        raise pytest.UsageError(f"xcomsim: --xcomsim-conformance={mode!r}; use auto, on or off")
    if mode == "on" or (mode == "auto" and backend_given):
        from xcomsim.conformance import suite

        return suite.__file__
    return None


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Show harness errors (bad backend, missing DAG, ...) as one line, not an Airflow traceback."""
    try:
        yield
    except XcomsimError as exc:
        raise pytest.fail.Exception(f"xcomsim: {exc}", pytrace=False) from None
