"""Hypothesis settings profiles for xcomsim's property tests.

``ci``: fast and derandomised (the same examples every run, so CI is stable);
``dev``: random examples, the default budget, failures kept in the example
database for replay; ``thorough``: ten times the examples. Deadlines are off:
a DAG-level example talks to a real Execution API and store servers.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

from xcomsim.errors import ConfigError

PROFILES = ("ci", "dev", "thorough")


def default_profile() -> str:
    return "ci" if os.environ.get("CI") else "dev"


def checked(name: str | None) -> str:
    """``name`` (default: ``ci`` under CI, else ``dev``), or a ConfigError naming the choices; imports nothing."""
    name = name or default_profile()
    if name not in PROFILES:
        raise ConfigError(f"xcomsim profile {name!r} is unknown; use one of {', '.join(PROFILES)}")
    return name


def activate(name: str | None = None, database: str | None = None, replay: bool = False) -> str:
    """Register the profiles and load ``name`` (default: ``ci`` under CI, else ``dev``).

    ``replay``: run only the failing examples kept in the example database
    (``database``, else Hypothesis's ``.hypothesis/examples``) and generate none.
    """
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    name = checked(name)
    suppressed = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
    db = DirectoryBasedExampleDatabase(database) if database else None
    common = {"deadline": None, "suppress_health_check": suppressed, "print_blob": True}
    settings.register_profile("xcomsim-ci", max_examples=100, derandomize=True, database=None, **common)
    settings.register_profile(
        "xcomsim-dev", max_examples=100, derandomize=False, **({"database": db} if db else {}), **common
    )
    settings.register_profile(
        "xcomsim-thorough", max_examples=1000, derandomize=False, **({"database": db} if db else {}), **common
    )
    if replay:
        kept = db or DirectoryBasedExampleDatabase(".hypothesis/examples")
        settings.register_profile("xcomsim-replay", settings.get_profile(f"xcomsim-{name}"), derandomize=False,
                                  database=kept, phases=[Phase.explicit, Phase.reuse])  # fmt: skip
        settings.load_profile("xcomsim-replay")
        return name
    settings.load_profile(f"xcomsim-{name}")
    return name


def replay_hint(target: str, options: Sequence[str] = (), rootdir: str | None = None) -> str:
    """A command that re-runs a failing property test of this session, ready to paste.

    ``target``: a node id or a ``-k`` selection (``-k '...'``); ``options``: the command-line options in
    force (the backend, the stores); ``rootdir``: where to run it, so the project's ini and conftests apply.
    """
    from hypothesis import settings

    current = settings()
    where = f"cd {shlex.quote(rootdir)} && " if rootdir else ""
    pytest = pytest_command()
    own = ("--xcomsim-profile", "--xcomsim-replay", "--xcomsim-hypothesis-db")  # the hint sets these itself
    given = "".join(f" {shlex.quote(o)}" for o in options if not o.startswith(own))
    selected = target if target.startswith("-k ") else shlex.quote(target)
    if current.derandomize:
        return (f"{where}{pytest} --xcomsim --xcomsim-profile=ci{given} {selected}"
                "   (derandomised: the same examples every run)")  # fmt: skip
    database = getattr(current.database, "path", None)
    kept = f" --xcomsim-hypothesis-db={shlex.quote(str(database))}" if database else ""
    return f"{where}{pytest} --xcomsim --xcomsim-replay{kept}{given} {selected}   (only the failing examples kept, none new)"


def pytest_command() -> str:
    """pytest as this interpreter runs it: a bare ``pytest`` may be another venv's, or none, in the user's shell."""
    return f"{shlex.quote(sys.executable)} -m pytest"
