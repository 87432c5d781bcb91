"""A soak as the HTML report draws it: the kit's verdict table, then the history on the wall clock.

Only the shape of ``xcomsim.html_report`` is filled in here (its ``soak`` part
and its ``verdicts``); the page, the verdict rendering and the swim lanes are
the report's own. Each Celery worker gets a lane, split into one row per
concurrent task process (a pool slot, in effect); every operation sits on its
process's row at the time it ran, and every fault is a band over what it hit.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from xcomsim import html_report
from xcomsim.soak.history import History


def page(result: Any, title: str | None = None) -> dict[str, Any]:
    """The report's dict for a soak ``Result`` (``xcomsim.soak.run``)."""
    verdicts = html_report.verdict_entries([result.judged.verdicts])
    for guarantee in verdicts[0]["guarantees"]:
        ops = result.judged.violating.get(guarantee["name"], [])
        if ops:
            guarantee["detail"] += f"\n\nviolating operations of the history: {', '.join(f'#{i}' for i in ops)}"
    backend = result.judged.verdicts.backend
    return {"title": title or f"xcomsim soak: {backend}", "verdicts": verdicts,
            "soak": timeline(result.history, result.faults, result.judged.violating, result.figures)}  # fmt: skip


def write(path: str | Path, result: Any) -> Path:
    return html_report.write(path, page(result))


def timeline(history: History, faults: list[dict[str, Any]], violating: dict[str, list[int]],
             figures: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``soak`` part of the report: times in seconds from the first event."""
    spans: dict[str, list[float]] = {}
    labels: dict[str, str] = {}
    workers: dict[str, str] = {}
    by_pid: dict[int, str] = {}
    for event in history.events:
        process = f"{event.get('worker', '?')}/pid {event['pid']}"
        span = spans.setdefault(process, [event["t"], event["t"]])
        span[0], span[1] = min(span[0], event["t"]), max(span[1], event["t"])
        workers[process] = str(event.get("worker", "?"))
        by_pid[event["pid"]] = process
        if event["op"] == "task" and event.get("phase") == "begin":
            index = event.get("map_index")
            name = event.get("task_id", "?") + ("" if index in (-1, None) else f"[{index}]")
            labels[process] = f"{name} {event.get('run_id', '')} try {event.get('try_number')}"
    times = [t for span in spans.values() for t in span] + [f["t"] for f in faults]
    times += [f["ended"] for f in faults if f.get("ended")]
    origin = min(times, default=0.0)
    end = max(times, default=origin + 1.0)
    rel = lambda t: round(t - origin, 3)  # noqa: E731
    lanes = []
    for worker in sorted(set(workers.values())):
        rows: list[list[str]] = []
        ends: list[float] = []
        for process in sorted((p for p in spans if workers[p] == worker), key=lambda p: spans[p][0]):
            start = spans[process][0]
            free = next((i for i, last in enumerate(ends) if last <= start), None)
            if free is None:
                rows.append([])
                ends.append(0.0)
                free = len(rows) - 1
            rows[free].append(process)
            ends[free] = spans[process][1]
        lanes.append({"worker": worker, "rows": rows})
    blame: dict[int, list[str]] = defaultdict(list)
    for name, indexes in violating.items():
        for index in indexes:
            blame[index].append(name)
    operations = [{"index": o.index, "process": o.process, "op": o.op, "start": rel(o.start),
                   "end": None if o.end is None else rel(o.end), "outcome": o.outcome, "text": o.describe(),
                   "violates": blame.get(o.index, [])} for o in history.operations]  # fmt: skip
    nemesis = []
    for fault in faults:
        target = str(fault.get("target", ""))
        if target.startswith("pid ") and target[4:].isdigit():
            target = by_pid.get(int(target[4:]), target)
        whole_run = fault["fault"] == "skew"
        began, ended = (origin, end) if whole_run else (fault["t"], fault.get("ended") or fault["t"])
        detail = {k: v for k, v in fault.items() if k not in ("t", "ended", "fault", "target", "tail")}
        nemesis.append({"fault": fault["fault"], "target": target, "start": rel(began), "end": rel(ended),
                        "text": f"{rel(fault['t']):.1f}s {fault['fault']} {fault.get('target', '')} {detail or ''}".strip()})  # fmt: skip
    for fault in history.nemesis:  # faults a task injected on itself (a kill between guard and row)
        if fault in faults:
            continue
        process = f"{fault.get('worker')}/pid {fault.get('pid')}"
        nemesis.append({"fault": fault["fault"], "target": process, "start": rel(fault["t"]), "end": rel(fault["t"]),
                        "text": f"{rel(fault['t']):.1f}s {fault['fault']} {process}: {fault.get('target')}"})  # fmt: skip
    processes = {p: {"start": rel(s), "end": rel(e), "label": labels.get(p, "")} for p, (s, e) in spans.items()}
    return {"start": 0.0, "end": rel(end), "figures": dict(figures or {}), "lanes": lanes, "processes": processes,
            "operations": operations, "nemesis": sorted(nemesis, key=lambda n: n["start"])}  # fmt: skip
