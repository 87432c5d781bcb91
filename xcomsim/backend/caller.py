"""Who is calling, and what they name: the running task instance and the XCom coordinate.

Every check here runs before any I/O. The caller is the task instance Airflow
is running in this process, found where task code cannot swap it for another
object; a coordinate is checked for what Airflow's Execution API would make of
it, and its map index normalised to the ``int`` every name is built from.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Mapping
from typing import Any

from xcomsim.backend.config import BackendConfig, Undeclared, load
from xcomsim.backend.errors import XComScopeError, XComValueError
from xcomsim.backend.policy import AIRFLOW_INTERNAL_KEYS, LINK_PREFIX, extra_link_keys, policy_for

MAX_KEY_LEN = 512  # the xcom.key column
_TASK_RUNNER = "airflow.sdk.execution_time.task_runner"
_URL_RESERVED = "/?#%\\"


def running_task() -> Any | None:
    """The task instance whose code is running in this process; None outside any task.

    In a task process it is the one Airflow's task runner holds: the ``ti`` of its
    outermost frame that has both a ``ti`` and a ``context`` (``main``, ``run``,
    ``finalize``), never a parameter of a helper task code called, so a copy
    (``context["ti"].model_copy(update={"task_id": ...})``) pushing or deleting
    is still its own task. Where the runner also kept the supervisor's startup
    message, the task instance must still match it: edited in place, it is
    refused. Without the task runner on the stack (a task instance the harness
    runs as, in ``xcomsim.task_context``) it is Airflow's current task context.
    Code the task runner runs where no task instance can be found is refused,
    never treated as "not task code".
    """
    from airflow.sdk.definitions._internal.contextmanager import _CURRENT_CONTEXT

    held, in_runner = _runner_task()
    if held is not None:
        return held
    if _CURRENT_CONTEXT:
        return _CURRENT_CONTEXT[-1]["ti"]
    if in_runner:
        raise XComScopeError(
            "XCom call from code Airflow's task runner runs outside any task instance (no caller to check "
            "the XCom policy against): refused"
        )
    return None


_IDENTITY = ("dag_id", "task_id", "run_id", "map_index", "try_number")


def _runner_task() -> tuple[Any | None, bool]:
    """(the task instance the task runner holds, or None; whether any task-runner frame is on the stack)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    held, startup, in_runner = None, None, False
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__") == _TASK_RUNNER:
            in_runner = True
            local = frame.f_locals
            ti, context = local.get("ti"), local.get("context")
            if not isinstance(ti, RuntimeTaskInstance) and isinstance(context, Mapping) and "ti" not in local:
                ti = context.get("ti")
            if isinstance(ti, RuntimeTaskInstance) and context is not None:
                held = ti  # the outermost wins: it is the runner's own
            startup = local.get("startup_details", startup)
        frame = frame.f_back
    sent = getattr(startup, "ti", None)
    if held is not None and sent is not None:
        edited = [n for n in _IDENTITY if getattr(sent, n, None) != getattr(held, n, None)]
        if edited:
            raise XComScopeError(
                f"XCom call refused: the running task instance was edited ({', '.join(edited)} no longer what "
                f"the supervisor started: task {sent.task_id!r} of DAG {sent.dag_id!r}); identity is the running "
                "task's, never an object task code can change"
            )
    return held, in_runner


def normalise_map_index(map_index: Any, task_id: Any = None, key: Any = None) -> int:
    """The map index as the ``int`` every guard, object name and row is built from.

    ``None`` is -1 (not mapped); an integer of any integer type (numpy's too) is
    its ``int``. ``bool`` and ``float`` are refused: ``True == 1`` and ``-1.0 == -1``
    would pass an equality check yet name another guard and object.
    """
    if map_index is None:
        return -1
    if isinstance(map_index, bool) or not hasattr(type(map_index), "__index__"):
        raise XComValueError(
            f"map_index must be an int (-1 when not mapped), got {type(map_index).__name__} {map_index!r}: "
            f"refused before anything was read or written [task {task_id!r}; key {key!r}]"
        )
    index = operator.index(map_index)
    if index < -1:
        raise XComValueError(f"map_index {index} is below -1 (not mapped) [task {task_id!r}; key {key!r}]")
    return int(index)


def check_url_part(what: str, part: Any) -> None:
    if not isinstance(part, str) or not part:
        raise XComValueError(f"{what} must be a non-empty string, got {part!r}")
    shown = repr(part) if len(part) <= 60 else f"{part[:40]!r}... ({len(part)} chars)"
    for char in part:
        if char in _URL_RESERVED or not " " <= char <= "~":
            raise XComValueError(
                f"{what} {shown} contains {char!r} (U+{ord(char):04X}): refused before anything was read or "
                "written. Airflow's task SDK puts DAG id, run_id, task_id and key into Execution API URLs "
                "unquoted, so they may hold printable ASCII only, without / ? # % or backslash"
            )
    if part in (".", ".."):
        raise XComValueError(f"{what} {shown} is a relative path segment; Execution API URLs would resolve it")


def check_key(key: str, task_id: str) -> None:
    if not isinstance(key, str) or not key:
        raise XComValueError(f"task {task_id!r} pushed an XCom with an empty or non-string key {key!r}")
    if len(key) > MAX_KEY_LEN:
        raise XComValueError(
            f"task {task_id!r} pushed XCom key {key[:40]!r}... of {len(key)} chars; Airflow's xcom.key holds {MAX_KEY_LEN}"
        )


MAX_LINK_LEN = 4096  # a link Airflow stores inline


def airflow_key(caller: Any, key: str) -> bool:
    """Whether ``key`` is Airflow's own bookkeeping for this task: branching's, or one of its extra links'."""
    return key in AIRFLOW_INTERNAL_KEYS or key in extra_link_keys(getattr(caller, "task", None))


def _source_link_key(caller: Any, dag_id: str, task_id: str, key: str) -> bool:
    """Whether ``key`` is an extra link's key of the source task, in the caller's own DAG: a link, readable."""
    dag = getattr(getattr(caller, "task", None), "dag", None)
    if dag is None or dag_id != caller.dag_id or task_id not in getattr(dag, "task_dict", {}):
        return False
    return key in extra_link_keys(dag.task_dict[task_id])


def _skip_mixins() -> tuple[type, ...]:
    """The SkipMixin classes of the installed Airflow (task SDK, and the standard provider's own)."""
    import importlib

    found = []
    for module in ("airflow.sdk.bases.skipmixin", "airflow.providers.standard.utils.skipmixin"):
        try:
            found.append(importlib.import_module(module).SkipMixin)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


class CallerChecks:
    """The backend's checks of caller and coordinate; each a classmethod a mutant can replace."""

    @classmethod
    def _check_coordinate(cls, dag_id: str, run_id: str, task_id: str, key: str) -> None:
        """Refuse, before any I/O, what would change the meaning of an Execution API URL.

        The task SDK builds ``xcoms/{dag_id}/{run_id}/{task_id}/{key}`` without
        quoting: a ``/`` shifts the segments (``run_id="r/other_task/secret?"``
        reads another task's key), ``..`` walks up, ``?``/``#`` cut the path, ``%``
        is decoded by the server (``%2e%2e``), NUL breaks the request, and
        characters outside ASCII fail deep in the HTTP client.
        """
        try:
            for what, part in (("DAG id", dag_id), ("run_id", run_id), ("task_id", task_id), ("XCom key", key)):
                check_url_part(what, part)
        except XComValueError as exc:  # name who asked, for what, as every refusal does
            try:
                caller = running_task()
            except XComScopeError:
                caller = None
            who = f"task {caller.task_id!r}" if caller is not None else "a caller outside any task"
            raise XComValueError(f"{exc} [{who}; source task {task_id!r}; key {key!r}]") from None

    @classmethod
    def _map_index(cls, map_index: Any, task_id: Any, key: Any) -> Any:
        """The coordinate's map index, normalised before any I/O (see ``normalise_map_index``)."""
        return normalise_map_index(map_index, task_id, key)

    @classmethod
    def _check_pusher(cls, dag_id: str, task_id: str, run_id: str, map_index: int, key: str,
                      verb: str = "push") -> Any:  # fmt: skip
        """The running task instance, which must be the coordinate written to: identity is never an argument.

        ``verb``: what is being done (``push``, ``delete``, ``purge``); deleting a value is writing it.
        """
        caller = running_task()
        if caller is None:
            raise XComScopeError(
                f"XCom {verb} of key {key!r} as task {task_id!r} of DAG {dag_id!r} from outside any running task: "
                f"refused (who may {verb} is the running task instance, never an argument)"
            )
        mine = (caller.dag_id, caller.task_id, caller.run_id, caller.map_index)
        if (dag_id, task_id, run_id, map_index) != mine:
            raise XComScopeError(
                f"XCom {verb} refused: task {caller.task_id!r} of DAG {caller.dag_id!r} (run {caller.run_id!r}, "
                f"map_index {caller.map_index}) may {verb} only as itself, not as task {task_id!r} of DAG "
                f"{dag_id!r} (run {run_id!r}, map_index {map_index}); key {key!r}"
            )
        return caller

    @classmethod
    def _check_push_scope(cls, config: BackendConfig, dag_id: str, task_id: str, key: str) -> None:
        policy = policy_for(dag_id)
        if policy is None:
            if config.undeclared_dags is Undeclared.DENY:
                raise XComScopeError(
                    f"DAG {dag_id!r} declares no XCom policy and [xcomsim] undeclared_dags=deny: "
                    f"task {task_id!r} may not push key {key!r}"
                )
            return
        if not policy.may_push(task_id, key):
            allowed = sorted(policy.pushes.get(task_id, ()))
            raise XComScopeError(
                f"XCom push refused: DAG {dag_id!r}, task {task_id!r} may not push key {key!r} "
                f"(its policy allows {allowed})"
            )

    @classmethod
    def _check_pull_scope(cls, dag_id: str, task_id: str, key: str) -> None:
        try:
            caller = running_task()
        except XComScopeError as exc:  # the caller is unknowable: name what was asked for
            raise XComScopeError(f"{exc} [caller unknown; source task {task_id!r} of DAG {dag_id!r}; key {key!r}]") from None
        if caller is None:
            cls._check_pull_outside_tasks(dag_id, task_id, key)
            return
        policy = policy_for(caller.dag_id)
        if policy is None:
            if load().undeclared_dags is Undeclared.DENY:
                raise XComScopeError(
                    f"XCom pull refused: DAG {caller.dag_id!r} declares no XCom policy and "
                    f"[xcomsim] undeclared_dags=deny (caller {caller.task_id!r}, source {task_id!r}, key {key!r})"
                )
            return
        if not policy.may_pull(caller.task_id, dag_id, task_id, key) and not _source_link_key(caller, dag_id, task_id, key):
            source = task_id if dag_id == caller.dag_id else f"{dag_id}/{task_id}"
            raise XComScopeError(
                f"XCom pull refused: in DAG {caller.dag_id!r}, task {caller.task_id!r} may not pull "
                f"key {key!r} from task {source!r}"
            )

    @classmethod
    def _airflow_key(cls, caller: Any, key: str) -> bool:
        """Whether ``key`` is Airflow's own bookkeeping for the caller's task (see ``airflow_key``)."""
        return airflow_key(caller, key)

    @classmethod
    def _check_pull_outside_tasks(cls, dag_id: str, task_id: str, key: str) -> None:
        """A pull with no running task instance: a DAG-level callback (the DAG processor runs it), a trigger
        (the triggerer), code a DAG file runs while parsed, or a script. A policy grants pulls to tasks, and
        this is none: refused from a DAG that declares one, and under ``undeclared_dags=deny`` from any."""
        if policy_for(dag_id) is not None:
            raise XComScopeError(
                f"XCom pull refused: no running task instance is pulling key {key!r} from task {task_id!r} of DAG "
                f"{dag_id!r} (a DAG-level callback, a trigger, or code run while a DAG file is parsed): that DAG's "
                "policy grants pulls to its tasks only"
            )
        if load().undeclared_dags is Undeclared.DENY:
            raise XComScopeError(
                f"XCom pull refused: no running task instance is pulling key {key!r} from task {task_id!r} of DAG "
                f"{dag_id!r}, which declares no XCom policy, and [xcomsim] undeclared_dags=deny"
            )

    @classmethod
    def _check_bookkeeping(cls, caller: Any, key: str, value: Any) -> None:
        """Airflow's own keys skip push-scope and the guard, so only what Airflow writes under them is let in.

        ``skipmixin_key``: a task whose operator is a ``SkipMixin`` (branch and
        short-circuit operators) pushing ``{"skipped": [task ids]}`` or
        ``{"followed": [task ids]}`` naming tasks of its own DAG. An extra link's
        key (``_link_<Class>``, or whatever ``xcom_key`` the operator's link names):
        a link, a string; Airflow's ``finalize`` writes the link there inline past
        the backend, so a value pushed under it would be replaced.
        """
        task = getattr(caller, "task", None)
        if key in extra_link_keys(task) and key not in AIRFLOW_INTERNAL_KEYS:
            if not key.startswith(LINK_PREFIX):
                raise XComScopeError(
                    f"XCom push refused: key {key!r} of task {caller.task_id!r} is the xcom_key of an extra link of "
                    f"its operator ({type(task).__name__}): Airflow's finalize writes the link there past the "
                    "backend and would replace the value; push the value under another key"
                )
            if not isinstance(value, str) or len(value) > MAX_LINK_LEN:
                raise XComScopeError(
                    f"XCom push refused: key {key!r} is the xcom_key of an extra link of task {caller.task_id!r} "
                    f"({type(task).__name__}): Airflow's finalize writes the link there, so only a link (a string "
                    f"of at most {MAX_LINK_LEN} chars) goes under it, got {type(value).__name__}; push the value "
                    "under another key"
                )
            return
        dag_tasks = set(getattr(getattr(task, "dag", None), "task_ids", ()))
        shape_ok = (
            isinstance(value, dict)
            and len(value) == 1
            and next(iter(value)) in ("skipped", "followed")
            and isinstance(ids := next(iter(value.values())), list)
            and all(isinstance(i, str) and i in dag_tasks for i in ids)
        )
        if not (isinstance(task, _skip_mixins()) and shape_ok):
            raise XComScopeError(
                f"XCom push refused: key {key!r} is Airflow's branching bookkeeping; only a branching "
                f"operator (SkipMixin) writes it, as {{'skipped' or 'followed': [task ids of its DAG]}}. "
                f"Task {caller.task_id!r} ({type(task).__name__}) pushed {type(value).__name__} {str(value)[:80]!r}"
            )
