"""A broken variant of Airflow's own object-storage XCom backend."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.io.xcom.backend import XComObjectStorageBackend


CONFIG = {
    "common.io.xcom_objectstorage_path": "s3://aws_default@xcomsim/xcom",
    "common.io.xcom_objectstorage_threshold": "1000",
}


class PurgeForgetsObjectXCom(XComObjectStorageBackend):
    """Never deletes the offloaded object: every deleted XCom leaves an orphan behind."""

    xcomsim_contract = {"offload": (CONFIG, 1000), "config": CONFIG}

    @staticmethod
    def purge(xcom: Any, session: Any = None) -> None:
        return None
