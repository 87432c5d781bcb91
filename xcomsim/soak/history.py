"""The history of a soak: every process's recorded events, gathered, put on one clock, paired up.

Each task process appended its own events (``probe``); a worker whose clock
was skewed on purpose wrote its timestamps on that clock, so they are moved
back by the known offset: after that, every time is this machine's, which is
also the clock of the PostgreSQL and Redis servers that judge leases. A begun
operation with no end belongs to a process that died in it (a kill).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Operation:
    """One backend operation of one task process, begun and (unless the process died in it) ended."""

    index: int
    op: str  # push, pull, claim, release, scope, delete, purge, gc-delete
    process: str  # "worker2/pid 1234"
    worker: str
    pid: int
    fields: dict[str, Any]
    start: float
    end: float | None  # None: the process died inside it
    outcome: str  # ok, error, died
    error_type: str | None = None
    error: str | None = None

    @property
    def try_number(self) -> int:
        return int(self.fields.get("try_number") or 0)

    def coordinate(self) -> str:
        f = self.fields
        return f"{f.get('dag_id')}/{f.get('run_id')}/{f.get('task_id')}/{f.get('map_index')}/{f.get('key')}"

    def describe(self) -> str:
        f = self.fields
        what = {
            "push": lambda: f"push {f.get('key')!r} of {f.get('task_id')}[{f.get('map_index')}] {f.get('run_id')}",
            "pull": lambda: f"pull {f.get('key')!r} of {f.get('source')}[{f.get('source_map')}] {f.get('run_id')}",
            "claim": lambda: f"claim {f.get('claim_id')} as {f.get('holder')} (lease {f.get('lease')}s)",
            "release": lambda: f"release {f.get('claim_id')} as {f.get('holder')}",
        }.get(self.op, lambda: f"{self.op} {f.get('key') or f.get('target') or ''}")()
        outcome = {"ok": "ok", "died": "process killed inside it"}.get(self.outcome, f"{self.error_type}: {self.error}")
        extra = f" won={f['won']}" if "won" in f else ""
        return (f"op #{self.index} {self.process} try {self.try_number}: {what} "
                f"[{self.start:.3f}..{'-' if self.end is None else f'{self.end:.3f}'}] -> {outcome}{extra}")  # fmt: skip


@dataclass
class History:
    events: list[dict[str, Any]] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    nemesis: list[dict[str, Any]] = field(default_factory=list)  # faults injected, by the soak or in a task

    def of(self, op: str) -> list[Operation]:
        return [o for o in self.operations if o.op == op]

    def processes(self) -> list[str]:
        return sorted({o.process for o in self.operations})


def load_events(folder: Path, skew: Mapping[str, int]) -> list[dict[str, Any]]:
    """Every event of every process, its times moved onto this machine's clock."""
    events = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:  # the last line of a process killed while writing it
                continue
            offset = skew.get(event.get("worker", ""), 0)
            if offset:
                event["t"] -= offset
                if "began" in event:
                    event["began"] -= offset
            events.append(event)
    events.sort(key=lambda e: e["t"])
    return events


def build(events: Iterable[dict[str, Any]], nemesis: list[dict[str, Any]] | None = None) -> History:
    """Pair each process's begin with its end; in-task faults join the soak's own nemesis events."""
    history = History(nemesis=list(nemesis or []))
    open_ops: dict[tuple[int, str], dict[str, Any]] = {}
    for event in events:
        history.events.append(event)
        op, phase, pid = event["op"], event.get("phase"), event["pid"]
        if op == "nemesis":
            history.nemesis.append({"t": event["t"], "fault": event.get("fault"), "target": event.get("coordinate"),
                                    "worker": event.get("worker"), "pid": pid})  # fmt: skip
            continue
        if op in ("task", "row"):
            continue
        if phase == "begin":
            open_ops[(pid, op)] = event
        elif phase in ("ok", "error"):
            begun = open_ops.pop((pid, op), None)
            start = begun["t"] if begun else event.get("began", event["t"])
            history.operations.append(_operation(event, start, event["t"], phase))
    for begun in open_ops.values():  # never ended: the process died inside the operation
        history.operations.append(_operation(begun, begun["t"], None, "died"))
    history.operations.sort(key=lambda o: o.start)
    for index, operation in enumerate(history.operations):
        operation.index = index
    history.nemesis.sort(key=lambda n: n["t"])
    return history


_META = {"op", "phase", "t", "mono", "pid", "worker", "began", "error_type", "error"}


def _operation(event: dict[str, Any], start: float, end: float | None, outcome: str) -> Operation:
    fields = {k: v for k, v in event.items() if k not in _META}
    worker, pid = event.get("worker", "?"), event["pid"]
    return Operation(0, event["op"], f"{worker}/pid {pid}", worker, pid, fields, start, end, outcome,
                     event.get("error_type"), event.get("error"))  # fmt: skip
