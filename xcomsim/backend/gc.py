"""The sweeper: delete stored objects that no ``xcom`` row references.

Airflow calls a backend's ``purge`` only through ``BaseXCom.delete`` (a task
retry or clear). The DB-side replace in ``XComModel.set``, a UI delete,
``airflow db clean`` and a DagRun re-run cascade remove rows without it, so any
object store behind an XCom backend collects orphans. ExclusiveXCom writes one
fixed object per XCom coordinate, so reruns do not multiply them; what deleted
rows leave behind is found here. Guards of runs that no longer exist go too.

A sweep runs while tasks push. A push uploads its object before its row lands,
so an object no row references may be a value in flight. Three rules keep
every live value:

* what a row references is its coordinate's own object, matched by store
  location (bucket and prefix) and fixed name, never by connection id or how
  the reference is spelled;
* an unreferenced object younger than ``[xcomsim] gc_grace_seconds`` (default
  an hour) is kept: S3 gives its last-modified time, Redis none, so there the
  age of its push-once guard is used, and an object of unknown age is kept;
* right before deleting, the rows are read again and each object's
  version (S3's ETag) is compared with the listing's: a row that landed, or an
  object rewritten since, is kept.

What remains is a push whose upload and row are further apart than the grace,
and a rewrite in the milliseconds between the last check and the delete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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


def sweep(store: ObjectStore | str, engine: Engine | str, *, dry_run: bool = True, grace_seconds: float | None = None,
          clock: Callable[[], float] = time.time) -> SweepReport:  # fmt: skip
    """Find (and unless ``dry_run``, delete) orphan values and guards of gone runs; see the module docstring."""
    from xcomsim.backend.config import load

    store = open_store(store) if isinstance(store, str) else store
    engine = create_engine(engine) if isinstance(engine, str) else engine
    grace = load().gc_grace_seconds if grace_seconds is None else grace_seconds
    values = {o.name: o for o in store.listing("values/")}  # listed before the rows: a row landing after is seen
    guards = {name: _guard_body(store, name) for name in store.names("guards/")}
    referenced = referenced_names(engine, store)
    report = SweepReport(str(store.location), dry_run, referenced=len(referenced & set(values)))
    now = clock()
    for name in sorted(set(values) - referenced):
        modified = values[name].modified
        if modified is None:  # Redis keeps no time: the guard's is the push's
            modified = guards.get("guards/" + name.removeprefix("values/").partition(".t")[0], {}).get("created_at")
        (report.orphan_values if modified is not None and now - modified >= grace else report.young).append(name)
    runs = _live_runs(engine)
    report.stale_guards = sorted(n for n, g in guards.items() if (g.get("dag_id"), g.get("run_id")) not in runs)
    if not dry_run:
        fresh = referenced_names(engine, store)  # read again right before deleting
        kept = [n for n in report.orphan_values if n in fresh or store.version(n) != values[n].version]
        report.orphan_values = [n for n in report.orphan_values if n not in kept]
        report.young += kept
        for name in report.orphan_values + report.stale_guards:
            store.delete(name)
    return report


def _guard_body(store: ObjectStore, name: str) -> dict[str, Any]:
    found = store.read(name)
    try:
        return json.loads(found[0]) if found else {}
    except ValueError:
        return {}
