"""Parsing a bundle's folder into a DAG bag, on every supported Airflow.

From Airflow 3.2 a ``DagBag`` takes its bundle's name (to check the DAGs' executors against the
bundle's team); 3.1's takes none, and its bag has no name to give.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any


@functools.cache
def takes_bundle_name() -> bool:
    """Whether ``DagBag`` accepts ``bundle_name`` (Airflow 3.2+)."""
    from xcomsim.compat.names import DagBag

    return "bundle_name" in inspect.signature(DagBag.__init__).parameters


def bundle_dag_bag(folder: Path, bundle_name: str) -> Any:
    """Airflow's ``BundleDagBag`` of ``folder``, the bundle named ``bundle_name`` where the bag takes a name."""
    from xcomsim.compat.names import BundleDagBag

    named = {"bundle_name": bundle_name} if takes_bundle_name() else {}
    return BundleDagBag(dag_folder=str(folder), bundle_path=folder, **named)
