"""Which Airflow versions xcomsim supports: exactly what its package metadata allows.

The range is read from xcomsim's own ``Requires-Dist`` on ``apache-airflow`` (pyproject.toml,
where CI's matrix sets it), never from a table here. An Airflow outside it (installed with
``--no-deps``, or xcomsim run from a checkout) gets one line at session start, and the
session goes on: what works, works.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version


def supported_airflow() -> str:
    """The specifier xcomsim's metadata puts on ``apache-airflow`` (``""`` if it names none)."""
    try:
        requires = metadata.requires("xcomsim") or []
    except metadata.PackageNotFoundError:
        return ""
    for line in requires:
        requirement = Requirement(line)
        if requirement.name == "apache-airflow" and requirement.marker is None:
            return str(requirement.specifier)
    return ""


def installed_airflow() -> str | None:
    """The installed apache-airflow's version, read without importing Airflow."""
    try:
        return metadata.version("apache-airflow")
    except metadata.PackageNotFoundError:
        return None


def unsupported_line() -> str | None:
    """One line naming the supported range when the installed Airflow is outside it, else None."""
    supported = supported_airflow()
    installed = installed_airflow()
    if not supported:
        return None
    if installed is None:
        return f"xcomsim: apache-airflow is not installed; xcomsim supports apache-airflow{_readable(supported)}"
    from packaging.specifiers import SpecifierSet

    if Version(installed) in SpecifierSet(supported):
        return None
    return (
        f"xcomsim: Airflow {installed} is not supported (xcomsim supports apache-airflow{_readable(supported)}); "
        "carrying on, but expect failures that are not your DAGs' or your backend's"
    )


def _readable(specifier: str) -> str:
    """``>=3.1.8,<=3.3.2,!=3.2.0`` with the lower and upper bounds first."""
    parts = sorted(specifier.split(","), key=lambda p: (p.startswith("!="), not p.startswith(">")))
    return ",".join(parts)
