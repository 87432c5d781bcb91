"""The sweeper: delete stored objects that no ``xcom`` row references, and guards of runs that are gone.

Airflow calls a backend's ``purge`` only through ``BaseXCom.delete`` (a task
retry or clear). The DB-side replace in ``XComModel.set``, a UI delete,
``airflow db clean`` and a DagRun re-run cascade remove rows without it, so any
object store behind an XCom backend collects orphans. ExclusiveXCom writes one
object per try of an XCom coordinate (a retry deletes the object it replaced);
what deleted rows leave behind is found here.

A sweep runs while tasks push and while runs are deleted and triggered again.
Four rules keep every live value and guard:

* only names of this backend's own scheme are candidates (``values/`` and
  ``guards/`` with its hashed names): a ``README.txt`` or ``ledger.csv`` under
  the prefix is never touched;
* what a row references is its coordinate's own object, matched by store
  location (bucket and prefix) and name, never by connection id or how the
  reference is spelled;
* an unreferenced object younger than ``[xcomsim] gc_grace_seconds`` (default
  an hour) is kept, its age read on the store's own clock (S3: the listing's
  ``Date`` against ``LastModified``; Redis: ``TIME`` against the stamp its guard
  took from ``TIME``), never the sweeping host's; an object of unknown age is kept;
* right before each delete the rows and runs are read again, and the delete is
  conditional on the version judged (S3 ``If-Match``, a Redis compare-and-delete):
  a row that landed, a run triggered again under the same ``run_id``, a guard a
  push took over, an object rewritten since, are all kept.

What remains is a push whose guard and row are further apart than the grace,
and, on an S3 endpoint without conditional deletes, a rewrite in the
milliseconds between the last read and the delete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, String, cast, create_engine, select

from xcomsim.backend import codec
from xcomsim.backend.errors import XComStoreError
from xcomsim.backend.stores import ObjectStore, StoreLocation, open_store


@dataclass
class SweepReport:
    store: str
    dry_run: bool
    referenced: int = 0
    orphan_values: list[str] = field(default_factory=list)
    stale_guards: list[str] = field(default_factory=list)
    young: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return 0 if self.dry_run else len(self.orphan_values) + len(self.stale_guards)

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{self.store}: {self.referenced} referenced object(s); {verb} {len(self.orphan_values)} orphan "
            f"value(s) and {len(self.stale_guards)} guard(s) of runs that no longer exist; kept "
            f"{len(self.young)} unreferenced object(s) younger than the grace period (pushes may be in flight)"
        )


def referenced_names(engine: Engine, store: ObjectStore) -> set[str]:
    """Object names in ``store`` that rows own: each row holding a reference into the same bucket and prefix."""
    from airflow.models.xcom import XComModel

    t = XComModel.__table__.c
    names = set()
    query = select(t.dag_id, t.run_id, t.task_id, t.map_index, t.key, t.value).where(
        cast(t.value, String).like(f"%{codec.REF_PREFIX}%")
    )
    with engine.connect() as conn:
        for dag_id, run_id, task_id, map_index, key, value in conn.execute(query):
            if not codec.is_reference(value):
                continue
            try:
                place = StoreLocation.parse(codec.Reference.parse(value).store_path)
            except XComStoreError:
                continue  # not a reference this backend wrote: it owns nothing
            name = codec.Reference.parse(value).name
            if place.same_place(store.location) and codec.owned_by(name, dag_id, run_id, task_id, map_index, key):
                names.add(name)
    return names


def _live_runs(engine: Engine) -> set[tuple[str, str]]:
    from airflow.models.dagrun import DagRun

    table = DagRun.__table__
    with engine.connect() as conn:
        return {(d, r) for d, r in conn.execute(select(table.c.dag_id, table.c.run_id))}


def sweep(store: ObjectStore | str, engine: Engine | str, *, dry_run: bool = True,
          grace_seconds: float | None = None, guard_store: ObjectStore | str | None = None) -> SweepReport:  # fmt: skip
    """Find (and unless ``dry_run``, delete) orphan values and guards of gone runs; see the module docstring.

    ``guard_store``: where the guards live (default: ``[xcomsim] guard_path`` if set, else ``store``)."""
    from xcomsim.backend.config import load

    config = load()
    store = open_store(store) if isinstance(store, str) else store
    if guard_store is None:
        guard_store = open_store(config.guard_path) if config.guard_path else store
    guard_store = open_store(guard_store) if isinstance(guard_store, str) else guard_store
    engine = create_engine(engine) if isinstance(engine, str) else engine
    grace = config.gc_grace_seconds if grace_seconds is None else grace_seconds
    # listed before the rows: a row landing after is seen; only names of this backend's own scheme
    values = {o.name: o for o in store.listing("values/") if codec.own_scheme(o.name)}
    guards = {name: _guard_read(guard_store, name) for name in guard_store.names("guards/") if codec.own_scheme(name)}
    referenced = referenced_names(engine, store)
    report = SweepReport(str(store.location), dry_run, referenced=len(referenced & set(values)))
    server_now = None if store.keeps_times else guard_store.now()  # guards' stamps are on the guard store's clock
    for name in sorted(set(values) - referenced):
        age = values[name].age
        if age is None and server_now is not None:  # Redis keeps no time: its guard's stamp, on the server's clock
            stamped = guards.get(_guard_of(name), ({}, None))[0].get("stamped_at")
            age = None if stamped is None else server_now - float(stamped)
        (report.orphan_values if age is not None and age >= grace else report.young).append(name)
    runs = _live_runs(engine)
    # A guard stays while a value of it is kept: in a store that keeps no times, that value's only age is the
    # guard's stamp (values kept young here, and those in the guards' store when it holds values too)
    kept = set(report.young) | _values_with_guards(guard_store, store, config)
    report.stale_guards = sorted(n for n, (g, _) in guards.items()
                                 if (g.get("dag_id"), g.get("run_id")) not in runs and n not in
                                 {_guard_of(v) for v in kept})  # fmt: skip
    if dry_run:
        return report
    # Right before each delete, everything is judged again against live state, and the delete is conditional
    # on the version that was judged: a row that landed, a run triggered again under its run_id, a guard
    # another push took, an object rewritten: each is kept.
    fresh, runs = referenced_names(engine, store), _live_runs(engine)
    deleted_values, deleted_guards = [], []
    for name in report.orphan_values:
        token = values[name].token or _token(store, name)
        if name not in fresh and token is not None and store.delete_if(name, token):
            deleted_values.append(name)
        else:
            report.young.append(name)
    for name in report.stale_guards:
        body, token = guards[name]
        if (body.get("dag_id"), body.get("run_id")) not in runs and token is not None and guard_store.delete_if(
                name, token):  # fmt: skip
            deleted_guards.append(name)
    report.orphan_values, report.stale_guards = deleted_values, deleted_guards
    return report


def _values_with_guards(guard_store: ObjectStore, store: ObjectStore, config: Any) -> set[str]:
    """The values the guards' store holds beside them (``guard_path_values_below``), when another store is swept."""
    if guard_store is store or not config.guard_path_values_below or guard_store.keeps_times:
        return set()
    return {name for name in guard_store.names("values/") if codec.own_scheme(name)}


def _guard_of(value_name: str) -> str:
    return "guards/" + value_name.removeprefix("values/").partition(".t")[0]


def _token(store: ObjectStore, name: str) -> str | None:
    found = store.read(name)
    return None if found is None else found[1]


def _guard_read(store: ObjectStore, name: str) -> tuple[dict[str, Any], str | None]:
    found = store.read(name)
    if found is None:
        return {}, None
    try:
        return json.loads(found[0]), found[1]
    except ValueError:
        return {}, found[1]
