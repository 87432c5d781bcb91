"""The reference backend as it was before Airflow's own rows and keys, and code outside a task, were its concern.

``AIRFLOW_KEYS`` maps each mutant to the guarantee it breaks; ``tests/test_backend_airflow_keys.py``
runs each attack through a real DAG run on the mutant (which must lose) and on the reference.
"""

from __future__ import annotations

from typing import Any

from xcomsim.backend.policy import AIRFLOW_INTERNAL_KEYS
from xcomsim.backend.xcom import ExclusiveXCom


class LinkKeysAsDataXCom(ExclusiveXCom):
    """An extra link's key is any key: push-scoped, guarded, offloaded.

    ``TriggerDagRunOperator`` pushes its ``_link_TriggerDagRunLink`` through the
    backend: refused by a policy that does not declare it (the task fails, and
    Airflow's ``finalize`` writes the row anyway, past the backend), and under
    push-once its retry is refused; a link whose ``xcom_key`` equals a pushed key
    has ``finalize`` replace the committed value inline and orphan its object.
    """

    @classmethod
    def _airflow_key(cls, caller: Any, key: str) -> bool:
        return key in AIRFLOW_INTERNAL_KEYS


class UncheckedOutsidePullXCom(ExclusiveXCom):
    """A pull with no running task instance is let through as if the harness were reading.

    A DAG-level failure callback (run by the DAG processor) or a deferrable
    operator's trigger reads keys the policy grants to nobody, under ``deny`` too.
    """

    @classmethod
    def _check_pull_outside_tasks(cls, dag_id: str, task_id: str, key: str) -> None:
        return None


AIRFLOW_KEYS: dict[str, str] = {
    "xcomsim.mutants.airflow_keys.LinkKeysAsDataXCom": "push-scope",
    "xcomsim.mutants.airflow_keys.UncheckedOutsidePullXCom": "pull-scope",
}
