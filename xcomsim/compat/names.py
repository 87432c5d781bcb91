"""Airflow names that moved between the versions xcomsim runs on, looked up where the installed one has them.

``from xcomsim.compat.names import serialize`` (inside a function: resolving a name imports
Airflow) gives the installed Airflow's object. Each name lists its homes newest first, with
the Airflow versions that have it there; the first that exists wins, so a later Airflow that
keeps an old home as a deprecated alias is still served from the new one.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> ((module, attribute, the Airflow versions it lives there in), ...), newest home first.
HOMES: dict[str, tuple[tuple[str, str, str], ...]] = {
    # The task SDK's own serde, configuration and module loading came with task SDK 1.2 (Airflow 3.2).
    "serialize": (("airflow.sdk.serde", "serialize", "3.2+"), ("airflow.serialization.serde", "serialize", "3.1")),
    "deserialize": (("airflow.sdk.serde", "deserialize", "3.2+"), ("airflow.serialization.serde", "deserialize", "3.1")),
    "conf": (("airflow.sdk.configuration", "conf", "3.2+"), ("airflow.configuration", "conf", "3.1")),
    "import_string": (
        ("airflow.sdk._shared.module_loading", "import_string", "3.2+"),
        ("airflow.utils.module_loading", "import_string", "3.1"),
    ),
    # The DAG bags moved to the DAG processor in 3.2.
    "DagBag": (("airflow.dag_processing.dagbag", "DagBag", "3.2+"), ("airflow.models.dagbag", "DagBag", "3.1")),
    "BundleDagBag": (
        ("airflow.dag_processing.dagbag", "BundleDagBag", "3.2+"),
        ("airflow.models.dagbag", "BundleDagBag", "3.1"),
    ),
    # The scheduler's DAG (de)serialiser was renamed in 3.2.
    "DagSerialization": (
        ("airflow.serialization.serialized_objects", "DagSerialization", "3.2+"),
        ("airflow.serialization.serialized_objects", "SerializedDAG", "3.1"),
    ),
    # The worker entry point was renamed in 3.3 (``supervise`` is a deprecated alias there).
    "supervise_task": (
        ("airflow.sdk.execution_time.supervisor", "supervise_task", "3.3+"),
        ("airflow.sdk.execution_time.supervisor", "supervise", "3.1, 3.2"),
    ),
}

_found: dict[str, tuple[Any, str]] = {}


def home(name: str) -> tuple[Any, str]:
    """The installed Airflow's object for ``name`` and where it came from (``module.attribute``)."""
    if name in _found:
        return _found[name]
    tried = []
    for module_name, attribute, _versions in HOMES[name]:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise  # the module exists and failed inside: that is not a moved name
            tried.append(module_name)
            continue
        if hasattr(module, attribute):
            _found[name] = (getattr(module, attribute), f"{module_name}.{attribute}")
            return _found[name]
        tried.append(f"{module_name}.{attribute}")
    raise ImportError(f"the installed Airflow has no {name} (looked in {', '.join(tried)})")


def __getattr__(name: str) -> Any:
    if name in HOMES:
        return home(name)[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
