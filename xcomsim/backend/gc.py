"""The sweeper: delete stored objects that no ``xcom`` row references.

Airflow calls a backend's ``purge`` only through ``BaseXCom.delete`` (a task
retry or clear). The DB-side replace in ``XComModel.set``, a UI delete,
``airflow db clean`` and a DagRun re-run cascade remove rows without it, so any
object store behind an XCom backend collects orphans. ExclusiveXCom writes one
fixed object per XCom coordinate, so reruns do not multiply them; what deleted
rows leave behind is found here. Guards of runs that no longer exist go too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, String, cast, create_engine, select

from xcomsim.backend import codec
from xcomsim.backend.stores import ObjectStore, open_store


@dataclass
class SweepReport:
    store: str
    dry_run: bool
    referenced: int = 0
    orphan_values: list[str] = field(default_factory=list)
    stale_guards: list[str] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return 0 if self.dry_run else len(self.orphan_values) + len(self.stale_guards)

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{self.store}: {self.referenced} referenced object(s); {verb} {len(self.orphan_values)} orphan "
            f"value(s) and {len(self.stale_guards)} guard(s) of runs that no longer exist"
        )


def referenced_names(engine: Engine, store: ObjectStore) -> set[str]:
    """Object names the ``xcom`` table's references point at in ``store``."""
    from airflow.models.xcom import XComModel

    table = XComModel.__table__
    wanted = str(store.location)
    names = set()
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.value).where(cast(table.c.value, String).like(f"%{codec.REF_PREFIX}%")))
        for (value,) in rows:
            if codec.is_reference(value):
                ref = codec.Reference.parse(value)
                if ref.store_path == wanted:
                    names.add(ref.name)
    return names


def _live_runs(engine: Engine) -> set[tuple[str, str]]:
    from airflow.models.dagrun import DagRun

    table = DagRun.__table__
    with engine.connect() as conn:
        return {(d, r) for d, r in conn.execute(select(table.c.dag_id, table.c.run_id))}


def sweep(store: ObjectStore | str, engine: Engine | str, *, dry_run: bool = True) -> SweepReport:
    store = open_store(store) if isinstance(store, str) else store
    engine = create_engine(engine) if isinstance(engine, str) else engine
    referenced = referenced_names(engine, store)
    report = SweepReport(str(store.location), dry_run, referenced=len(referenced))
    report.orphan_values = sorted(set(store.names("values/")) - referenced)
    runs = _live_runs(engine)
    for name in sorted(store.names("guards/")):
        found = store.read(name)
        guard: dict[str, Any] = json.loads(found[0]) if found else {}
        if (guard.get("dag_id"), guard.get("run_id")) not in runs:
            report.stale_guards.append(name)
    if not dry_run:
        for name in report.orphan_values + report.stale_guards:
            store.delete(name)
    return report
