"""A broken variant of Airflow's own object-storage XCom backend."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.io.xcom.backend import XComObjectStorageBackend


class PurgeForgetsObjectXCom(XComObjectStorageBackend):
    """Never deletes the offloaded object: every deleted XCom leaves an orphan behind."""

    @staticmethod
    def purge(xcom: Any, session: Any = None) -> None:
        return None
