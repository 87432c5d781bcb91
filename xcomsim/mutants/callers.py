"""The reference backend as it was before its caller checks reached every call, one mutant per hole.

Each restores exactly one old behaviour of ``ExclusiveXCom``; ``CALLERS`` maps it
to the guarantee that must catch it. ``tests/test_backend_callers.py`` runs each
attack through a real DAG run on the mutant (which must lose) and on the
reference (which must not).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from xcomsim.backend.xcom import ExclusiveXCom


class UncheckedDeleteXCom(ExclusiveXCom):
    """``XCom.delete`` and ``XCom.purge`` take the coordinate as arguments and check no caller.

    ``XCom.set(task_id="victim")`` is refused, but a task that may push nothing
    deletes another task's (or another DAG's) row and object.
    """

    @classmethod
    def _check_pusher(cls, dag_id: str, task_id: str, run_id: str, map_index: int, key: str,
                      verb: str = "push") -> Any:  # fmt: skip
        if verb == "push":
            return super()._check_pusher(dag_id, task_id, run_id, map_index, key)
        return None

    @classmethod
    def _check_deleter(cls, key: Any, task_id: Any, dag_id: Any, run_id: Any, map_index: Any) -> tuple[int, Any]:
        from xcomsim.backend.caller import running_task

        cls._check_coordinate(dag_id, run_id, task_id, key)
        return (-1 if map_index is None else map_index), running_task()


class LooseMapIndexXCom(ExclusiveXCom):
    """The map index is compared with ``==`` but names guards and objects by its JSON form.

    ``map_index=True`` (``== 1``) or ``-1.0`` (``== -1``) passes the pusher check
    and takes a guard of its own: a second push replaces a committed value, and
    ``xcomsim gc`` deletes an object named that way as an orphan; a numpy integer
    fails with a raw ``TypeError``.
    """

    @classmethod
    def _map_index(cls, map_index: Any, task_id: Any, key: Any) -> Any:
        return -1 if map_index is None else map_index


def _innermost_runner_task() -> Any:
    """The caller as it was found: the first task-runner frame with a ``ti`` (a helper's parameter too)."""
    from airflow.sdk.definitions._internal.contextmanager import _CURRENT_CONTEXT
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    if _CURRENT_CONTEXT:
        return _CURRENT_CONTEXT[-1]["ti"]
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "airflow.sdk.execution_time.task_runner":
            local = frame.f_locals
            context = local.get("context")
            for candidate in (local.get("ti"), context.get("ti") if isinstance(context, Mapping) else None):
                if isinstance(candidate, RuntimeTaskInstance):
                    return candidate
        frame = frame.f_back
    return None


class CopiedIdentityXCom(ExclusiveXCom):
    """In a callback the caller is the first ``ti`` found on the task runner's frames.

    ``context["ti"].model_copy(update={"task_id": "victim"}).xcom_push(...)`` reaches
    the runner's ``_xcom_push(ti=<the copy>)`` first: the copy's task id passes as
    the caller's own, and the callback pushes as the victim.
    """

    @classmethod
    def _check_pusher(cls, dag_id: str, task_id: str, run_id: str, map_index: int, key: str,
                      verb: str = "push") -> Any:  # fmt: skip
        from xcomsim.backend.errors import XComScopeError

        caller = _innermost_runner_task()
        if caller is None or (dag_id, task_id, run_id, map_index) != (
                caller.dag_id, caller.task_id, caller.run_id, caller.map_index):  # fmt: skip
            raise XComScopeError(f"XCom {verb} refused: may {verb} only as itself, not as task {task_id!r}")
        return caller


class GuardLeftOnRefusalXCom(ExclusiveXCom):
    """The row message is built (and validated by Airflow's ``SetXCom``) after the guard is taken.

    A value Airflow's model refuses (nested deeper than its validator allows)
    fails with the guard in place: the task's fallback push of that key then
    gets ``XComOverwriteError`` although nothing is stored.
    """

    @classmethod
    def _prepare_push(cls, key, value, dag_id, task_id, run_id, map_index, dag_result, mapped_length):
        from airflow.sdk.execution_time.comms import SetXCom

        stored, undo, _ = cls._write(key, value, dag_id, task_id, run_id, map_index)
        message = SetXCom(key=key, value=stored, dag_id=dag_id, task_id=task_id, run_id=run_id,
                          map_index=-1 if map_index is None else map_index, dag_result=dag_result,
                          mapped_length=mapped_length)  # fmt: skip
        return message, undo


CALLERS: dict[str, str] = {
    "xcomsim.mutants.callers.UncheckedDeleteXCom": "push-scope",
    "xcomsim.mutants.callers.LooseMapIndexXCom": "push-once",
    "xcomsim.mutants.callers.CopiedIdentityXCom": "push-scope",
    "xcomsim.mutants.callers.GuardLeftOnRefusalXCom": "refusal-leaves-nothing",
}
