"""Airflow's own ``BaseXCom`` in the same environment: what the backend is compared against.

A failure the baseline shares is Airflow's limit (its inline path: serde, the
Execution API, the JSON column), not the backend's break; the verdict reports
it as inherited.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

from xcomsim.checks import same

INHERITED = "inherited from Airflow's inline path"
_keys = itertools.count()


@contextlib.contextmanager
def airflow_baseline() -> Iterator[None]:
    """Every part of Airflow uses ``BaseXCom`` inside the block, the backend under test again after it."""
    from airflow.sdk.bases.xcom import BaseXCom

    from xcomsim.env.xcom_backend import install_backend

    previous = install_backend(BaseXCom)
    try:
        yield
    finally:
        install_backend(previous)


def baseline_round_trip(handle: Any, value: Any) -> tuple[bool, Any]:
    """Push and pull ``value`` through Airflow's ``BaseXCom`` on ``handle``: (kept exactly, what came back)."""
    key = f"xcomsim_baseline_{next(_keys)}"
    with airflow_baseline():
        try:
            with handle.active() as ti:
                ti.xcom_push(key=key, value=value)
                back = ti.xcom_pull(task_ids=ti.task_id, key=key)
        except Exception as exc:  # noqa: BLE001 - Airflow refusing the value is a limit too
            return False, exc
    return same(back, value), back


def baseline_allows_overwrite(handle: Any) -> bool:
    """Whether Airflow's ``BaseXCom`` lets a task push the same key twice (it does: the second replaces)."""
    key = f"xcomsim_baseline_{next(_keys)}"
    with airflow_baseline():
        try:
            with handle.active() as ti:
                ti.xcom_push(key=key, value="first")
                ti.xcom_push(key=key, value="second")
                return ti.xcom_pull(task_ids=ti.task_id, key=key) == "second"
        except Exception:  # noqa: BLE001 - refused: the baseline keeps push-once
            return False
