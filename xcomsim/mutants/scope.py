"""Broken variants of the reference backend's key scoping."""

from __future__ import annotations

from typing import Any

from xcomsim.backend.xcom import ExclusiveXCom


class PullScopeBypassXCom(ExclusiveXCom):
    """Checks pulls of single map indexes only: ``xcom_pull`` without ``map_indexes`` (get_all) goes unchecked."""

    @classmethod
    def get_all(cls, *, key: str, dag_id: str, task_id: str, run_id: str, include_prior_dates: bool = False) -> Any:
        from airflow.sdk.bases.xcom import BaseXCom

        return BaseXCom.get_all.__func__(  # type: ignore[attr-defined]
            cls, key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, include_prior_dates=include_prior_dates
        )


class PushScopeIgnoredXCom(ExclusiveXCom):
    """Never checks what a task may push."""

    @classmethod
    def _check_push_scope(cls, config: Any, dag_id: str, task_id: str, key: str) -> None:
        return None
