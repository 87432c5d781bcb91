"""Airflow's ORM models where their column types differ between supported versions.

A task instance's primary key is a ``Uuid`` column from Airflow 3.2 (it takes ``uuid.UUID``) and a
``String(36)`` in 3.1 (it takes the UUID's text: SQLite cannot bind a ``uuid.UUID``). The key is
given in the type the installed column declares.
"""

from __future__ import annotations

import functools
from typing import Any
from uuid import UUID


@functools.cache
def _ti_id_type() -> type:
    from airflow.models.taskinstance import TaskInstance

    return TaskInstance.__table__.c.id.type.python_type


def task_instance_key(ti_id: UUID | str) -> Any:
    """``ti_id`` as ``session.get(TaskInstance, ...)`` takes it on the installed Airflow."""
    return _ti_id_type()(str(ti_id))


def ti_id_is_text() -> bool:
    """Whether task instance ids are stored as text columns (Airflow 3.1)."""
    return _ti_id_type() is str
