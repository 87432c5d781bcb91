"""Running one task instance in-process with a client of xcomsim's choosing, on every supported Airflow.

From Airflow 3.3 (task SDK 1.3) ``run_task_in_process`` takes the Execution API client to use.
Before, ``InProcessTestSupervisor.start`` always asks ``_api_client(dag)`` for one; a subclass
that answers with the given client runs the same ``start`` (the same task runner, ``finalize``
and state update), so both paths differ only in where the client comes from.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any


@functools.cache
def takes_client() -> bool:
    """Whether ``run_task_in_process`` accepts ``client=`` (Airflow 3.3+)."""
    from airflow.sdk.execution_time.supervisor import run_task_in_process

    return "client" in inspect.signature(run_task_in_process).parameters


def run_task_in_process(ti: Any, task: Any, client: Any) -> Any:
    """Airflow's ``run_task_in_process(ti, task)`` with ``client`` as its Execution API client."""
    from airflow.sdk.execution_time import supervisor

    if takes_client():
        return supervisor.run_task_in_process(ti=ti, task=task, client=client)
    previous, _given.client = getattr(_given, "client", None), client
    try:
        return _supervisor_with_given_client().start(what=ti, task=task)
    finally:
        _given.client = previous


_given = threading.local()


@functools.cache
def _supervisor_with_given_client() -> type:
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    class WithGivenClient(InProcessTestSupervisor):  # type: ignore[misc, valid-type]
        @staticmethod
        def _api_client(dag: Any = None) -> Any:
            return _given.client

    return WithGivenClient
