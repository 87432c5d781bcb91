"""Putting DAGs into the test's metadata DB the way the DAG processor would.

A run can reach other DAGs: ``TriggerDagRunOperator`` starts one, an asset event
schedules one, ``ExternalTaskSensor`` waits on one. Airflow finds them in the
metadata DB, so besides the DAG being run, every DAG of the dags folder and every
DAG defined in the same file is stored too (``dag.test()`` re-syncs its bundle for
the same reason).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xcomsim.env.metadata_db import installed_clone
from xcomsim.errors import DagSerializationError
from xcomsim.noise import quiet_dag_parsing

BUNDLE_NAME = "dags-folder"

# File path -> (mtime, DAGs parsed from it): a file outside the dags folder is parsed once.
_FILE_DAGS: dict[str, tuple[float, list[Any]]] = {}


# Tasks of these classes name another DAG; a run with one needs that DAG in the DB.
_CROSS_DAG_CLASSES = ("TriggerDagRunOperator", "ExternalTaskSensor", "ExternalTaskMarker")


def reaches_other_dags(dag: Any) -> bool:
    """Whether a run of ``dag`` can touch another DAG: triggers one, senses one, or uses assets.

    Storing a DAG costs tens of milliseconds; a run that reaches no other DAG
    (most of them) stores only itself.
    """
    if getattr(dag, "timetable", None) is not None and type(dag.timetable).__name__.startswith("Asset"):
        return True
    for task in dag.tasks:
        if getattr(task, "inlets", None) or getattr(task, "outlets", None):
            return True
        if any(cls.__name__ in _CROSS_DAG_CLASSES for cls in type(task).__mro__):
            return True
    return False


def file_siblings(dag: Any) -> list[Any]:
    """The other DAGs defined in ``dag``'s file, as a fresh parse of that file finds them."""
    fileloc = getattr(dag, "fileloc", None)
    if not fileloc or not str(fileloc).endswith(".py") or not Path(fileloc).is_file():
        return []
    path = str(Path(fileloc).resolve())
    mtime = Path(path).stat().st_mtime
    cached = _FILE_DAGS.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, _module_dags(path) or _parse_file(path))
        _FILE_DAGS[path] = cached
    return [d for d in cached[1] if d.dag_id != dag.dag_id]


def _module_dags(path: str) -> list[Any]:
    """The DAG objects held by an already imported module of that file (a test module, say)."""
    from airflow.sdk import DAG

    for module in list(sys.modules.values()):
        module_file = getattr(module, "__file__", None)
        if module_file and str(Path(module_file).resolve()) == path:
            return [value for value in vars(module).values() if isinstance(value, DAG)]
    return []


def _parse_file(path: str) -> list[Any]:
    from xcomsim.compat.names import DagBag

    try:
        with quiet_dag_parsing():  # a broken file is reported once by the dags folder, not in every run's log
            return list(DagBag(dag_folder=path, safe_mode=False, load_op_links=False).dags.values())
    except Exception:  # a sibling that cannot be parsed only loses the sibling
        return []


def store_dags(dag: Any, others: Iterable[Any], session: Any) -> dict[str, Any]:
    """Serialise ``dag`` (which must succeed) and ``others`` (best effort) into the DB; ``dag``'s
    serialised form is returned (what the scheduler deserialises its DAG from)."""
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    try:
        lazy = [LazyDeserializedDAG.from_dag(dag)]
    except Exception as exc:
        raise DagSerializationError(f"DAG {dag.dag_id!r} cannot be serialised: {_cause(exc)}") from None
    seen = {dag.dag_id}
    for other in others:
        if other.dag_id in seen:
            continue
        seen.add(other.dag_id)
        try:
            lazy.append(LazyDeserializedDAG.from_dag(other))
        except Exception:
            continue  # its own run would report it; it only cannot be reached from this one
    clone = installed_clone()
    fresh = clone is not None and clone.untouched()  # a written-to clone is stored into, never copied over
    hashes = {d.dag_id: d.hash for d in lazy}  # each a JSON dump and digest of the DAG: once per store
    key = _stored_key(lazy, hashes)
    database = _database_identity(session, clone)
    if fresh and not session.in_transaction() and clone.restore_stored(key):
        _remember(database, key)
        return lazy[0].data  # stored exactly so into a fresh clone before: its state, copied (kept only on success)
    if _LAST_STORED.get(database) == key and _still_stored(hashes, session):
        return lazy[0].data  # this database holds exactly these DAGs from the last store into it
    update_dag_parsing_results_in_db(BUNDLE_NAME, None, lazy, {}, None, set(), session=session)
    session.commit()
    _raise_import_error(dag, session)
    _remember(database, key)
    if fresh:
        clone.remember_stored(key)
    return lazy[0].data


# Database (its URL and its object's identity) -> key of the last store into it (see ``_still_stored``).
_LAST_STORED: OrderedDict[tuple[str, int], str] = OrderedDict()
_LAST_STORED_KEPT = 64


def _remember(database: tuple[str, int], key: str) -> None:
    _LAST_STORED.pop(database, None)
    _LAST_STORED[database] = key
    while len(_LAST_STORED) > _LAST_STORED_KEPT:
        _LAST_STORED.popitem(last=False)


def _database_identity(session: Any, clone: Any) -> tuple[str, int]:
    """Which database a store goes to: a test's clone or server database is one object for its life."""
    return (session.get_bind().url.render_as_string(hide_password=True), id(clone) if clone is not None else 0)


def _still_stored(hashes: dict[str, str], session: Any) -> bool:
    """Whether storing DAGs of these hashes again would change nothing a run reads: the same DAGs went into this
    database last time (same key) and each is still its latest serialised version, active, in this bundle.

    Storing costs ~16 ms a DAG; a property that starts a DAG run per example, or a test running
    its DAG many times, would otherwise re-store an unchanged DAG every time. A test that changed
    what was stored (deleted the DAG, marked it stale) gets it stored again.
    """
    from sqlalchemy import func, select

    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel

    ids = list(hashes)
    latest = (
        select(SerializedDagModel.dag_id, func.max(SerializedDagModel.created_at).label("at"))
        .where(SerializedDagModel.dag_id.in_(ids))
        .group_by(SerializedDagModel.dag_id)
        .subquery()
    )
    rows = session.execute(
        select(SerializedDagModel.dag_id, SerializedDagModel.dag_hash, DagModel.is_stale, DagModel.bundle_name)
        .join(latest, (SerializedDagModel.dag_id == latest.c.dag_id) & (SerializedDagModel.created_at == latest.c.at))
        .join(DagModel, DagModel.dag_id == SerializedDagModel.dag_id)
    ).all()
    session.commit()
    found = {dag_id: (dag_hash, stale, bundle) for dag_id, dag_hash, stale, bundle in rows}
    return all(found.get(dag_id) == (dag_hash, False, BUNDLE_NAME) for dag_id, dag_hash in hashes.items())


def _stored_key(lazy: list[Any], hashes: dict[str, str]) -> str:
    """What storing these DAGs into a fresh clone depends on: each DAG's serialised form, its file
    (the DAG's code is stored from it) and Airflow's configuration (set per test through the
    environment). Parse times and the next scheduled run are those of the first store in the session."""
    parts = []
    for serialised in sorted(lazy, key=lambda d: d.dag_id):
        fileloc = serialised.data["dag"].get("fileloc")
        try:
            stat = os.stat(fileloc) if fileloc else None
        except OSError:
            stat = None
        file = (fileloc, serialised.data["dag"].get("relative_fileloc"), stat and (stat.st_mtime_ns, stat.st_size))
        parts.append((serialised.dag_id, hashes[serialised.dag_id], file))
    config = sorted((k, v) for k, v in os.environ.items() if k.startswith("AIRFLOW__"))
    return hashlib.sha256(repr((parts, config)).encode()).hexdigest()


def _raise_import_error(dag: Any, session: Any) -> None:
    """Serialisation failures land in the import-error table; surface the run DAG's as one line."""
    from sqlalchemy import select

    from airflow.models.serialized_dag import SerializedDagModel

    if session.scalar(select(SerializedDagModel.id).where(SerializedDagModel.dag_id == dag.dag_id).limit(1)):
        return
    from airflow.models.errors import ParseImportError

    errors = session.scalars(select(ParseImportError.stacktrace)).all()
    detail = next((e for e in errors if dag.dag_id in e), errors[0] if errors else "no serialised DAG was stored")
    raise DagSerializationError(f"DAG {dag.dag_id!r} cannot be serialised: {_last_line(detail)}")


def _cause(exc: BaseException) -> str:
    """The innermost message: serialisation wraps the real cause in one or two layers."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text
