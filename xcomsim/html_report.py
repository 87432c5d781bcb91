"""One self-contained HTML page of a run: DAG run results, conformance verdicts, bench charts.

The page is rendered from one JSON-able dict, so the pytest plugin (``--xcomsim-report``),
``xcomsim bench --html`` and any other producer fill the same shape and nothing else
needs to know HTML. Every part is optional::

    {
      "title": "xcomsim report",
      "runs": [                                   # DAG runs of the session (run_dag)
        {"test": "tests/test_x.py::test_y", "outcome": "failed",   # the test's own outcome (or absent)
         "dag_id": "d", "run_id": "r", "state": "success",
         "tasks": [{"task": "t", "state": "success", "try_number": 1, "error": None}]}
      ],
      "verdicts": [                               # the conformance kit, per backend
        {"backend": "pkg.MyXCom", "discovered": "offloads >= 1000 B to ...", "harness": [],
         "guarantees": [                          # in the terminal table's order
           {"name": "push-once", "verdict": "broken",        # kept, broken, not claimed, not run
            "state": "broken (first failure at example 5)",  # the terminal's words for it
            "detail": "counterexample, or why not claimed / not run (the terminal's lines)",
            "first_failure": 5, "replay": "pytest ... (or None)",
            "timeline": [                         # the counterexample as steps, one lane per worker
              {"step": 0, "worker": "w0", "operation": "push k", "io": "s3 PutObject",
               "fault": None, "crash": False, "violating": False}
            ]}
         ]}
      ],
      "bench": {...},                             # the `xcomsim bench --json` document
      "soak": {                                   # a soak's history on the wall clock (xcomsim.soak.report)
        "start": 0.0, "end": 180.0,               # seconds, the axis
        "figures": {"runs_per_minute": 8.5},
        "lanes": [{"worker": "worker1", "rows": [["worker1/pid 12", "worker1/pid 40"]]}],
        "processes": {"worker1/pid 12": {"start": 1.0, "end": 3.2, "label": "pushers[3] soak_00002 try 1"}},
        "operations": [{"index": 0, "process": "worker1/pid 12", "op": "push", "start": 1.2, "end": 1.3,
                        "outcome": "ok", "text": "op #0 ...", "violates": ["push-once"]}],
        "nemesis": [{"fault": "pause", "target": "worker1", "start": 60.0, "end": 95.0, "text": "..."}]
      }
    }

No script and no network resource: inline CSS and SVG only, so the file can be mailed,
attached to CI, or opened from disk.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_STATE_COLOURS = {
    "success": "#2e7d32", "kept": "#2e7d32", "failed": "#c62828", "broken": "#c62828",
    "upstream_failed": "#ef6c00", "skipped": "#9e9e9e", "not claimed": "#9e9e9e", "inherited": "#6a1b9a",
    "not run": "#ef6c00", "passed": "#2e7d32", "error": "#c62828",
}  # fmt: skip


def write(path: str | Path, data: Mapping[str, Any]) -> Path:
    """The page, or, for a path ending in ``.json``, the dict itself (the same words as the page and terminal)."""
    import json

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, default=str) + "\n" if target.suffix == ".json" else render(data)
    target.write_text(text, encoding="utf-8")
    return target


def render(data: Mapping[str, Any]) -> str:
    title = str(data.get("title") or "xcomsim report")
    parts = [f"<h1>{_e(title)}</h1>"]
    if data.get("verdicts"):
        parts.append(_verdicts(data["verdicts"]))
    if data.get("runs") is not None:
        parts.append(_runs(data["runs"]))
    if data.get("bench"):
        parts.append(_bench(data["bench"]))
    if data.get("soak"):
        parts.append(_soak(data["soak"]))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


# -- producers: turn xcomsim objects into the dict ---------------------------------------------


def run_entry(test: str, result: Any) -> dict[str, Any]:
    """A ``DagRunResult`` as one ``runs`` entry."""
    tasks = []
    for task in getattr(result, "tasks", []):
        error = getattr(task, "error", None)
        index = getattr(task, "map_index", -1)
        name = task.task_id if index in (-1, None) else f"{task.task_id}[{index}]"
        tasks.append({"task": name, "state": str(getattr(task, "state", "")),
                      "try_number": getattr(task, "try_number", None),
                      "error": f"{type(error).__name__}: {error}" if error is not None else None})  # fmt: skip
    return {"test": test, "dag_id": getattr(result, "dag_id", ""), "run_id": getattr(result, "run_id", ""),
            "state": str(getattr(result, "state", "")), "tasks": tasks}  # fmt: skip


def verdict_entries(verdicts: Iterable[Any]) -> list[dict[str, Any]]:
    """The conformance kit's ``Verdicts`` (one per backend) as ``verdicts`` entries.

    In the terminal table's fixed order (``Verdicts.ordered``, not the order the tests happened to
    run in), with the same lines: what was discovered, a broken guarantee's first failing example,
    what is inherited from Airflow, and harness problems.
    """
    entries = []
    for per_backend in verdicts:
        entry = per_backend.as_dict()
        for g, verdict in zip(entry["guarantees"], per_backend.ordered()):
            broken = verdict.verdict == "broken"
            g["timeline"] = parse_timeline(verdict.detail or verdict.counterexample) if broken else []
        entries.append(entry)
    return entries


_STEP = re.compile(r"^(?:E\s)?\s*(\d+)  (.+)$")  # the step number, then fixed-width columns (E: pytest's prefix)


def parse_timeline(text: str) -> list[dict[str, Any]]:
    """The race scheduler's printed timeline as steps; [] if none.

    ``Timeline.describe`` prints ``step  worker(10) operation(34) io``; a failure may print several (each
    example Hypothesis tried): the last one is the counterexample.
    """
    steps: list[dict[str, Any]] = []
    for line in text.splitlines():
        match = _STEP.match(line.rstrip())
        if not match or len(match.group(2)) < 47 or match.group(2)[10] != " ":
            continue
        number, rest = int(match.group(1)), match.group(2)
        if number == 0:
            steps = []
        io = rest[46:].strip().removeprefix(". ")
        steps.append({"step": number, "worker": rest[:10].strip(), "operation": rest[11:45].strip(), "io": io,
                      "fault": _fault(io), "crash": "crash" in io.lower(), "violating": False})  # fmt: skip
    if steps:
        steps[-1]["violating"] = True  # the scheduler stops at the step that broke the invariant
    return steps


def _fault(io: str) -> str | None:
    found = re.search(r"\b(s3-503|s3-412|s3-timeout|redis-drop-after|redis-drop|crash)\b", io)
    return found.group(1) if found else None


# -- sections ----------------------------------------------------------------------------------


def _verdicts(entries: Sequence[Mapping[str, Any]]) -> str:
    out = ['<section id="verdicts"><h2>Conformance verdicts</h2>']
    for backend in entries:
        out.append(f'<h3>{_e(backend.get("backend", ""))}</h3>')
        if backend.get("discovered"):
            out.append(f'<p class="discovered">{_e(backend["discovered"])}</p>')
        out.append('<table class="verdicts"><tr><th>guarantee</th><th>verdict</th><th>detail</th></tr>')
        for g in backend.get("guarantees", []):
            verdict = str(g.get("verdict", ""))
            first = f'<br><span class="first">first failure at example {_e(g["first_failure"])}</span>' if (
                g.get("first_failure")) else ""  # fmt: skip
            words = str(g.get("state") or verdict).split(" (first failure")[0]  # the terminal's words
            replay = f'<p>replay: <code class="replay">{_e(g["replay"])}</code></p>' if g.get("replay") else ""
            out.append(f'<tr class="verdict" data-verdict="{_e(verdict)}"><td>{_e(g.get("name", ""))}</td>'
                       f"<td>{_badge(verdict, words)}{first}</td><td><pre>{_e(g.get('detail', ''))}</pre>{replay}</td></tr>")  # fmt: skip
        out.append("</table>")
        for problem in backend.get("harness", []):
            out.append(f'<p class="harness">harness problem: {_e(problem)}</p>')
        for g in backend.get("guarantees", []):
            if g.get("verdict") == "broken" and g.get("timeline"):  # a race: its interleaving drawn
                out.append(f'<div class="counterexample"><h4>{_e(g.get("name", ""))}: counterexample</h4>'
                           f'<div class="lanes">{swim_lanes(g["timeline"])}</div></div>')  # a long race scrolls
    out.append("</section>")
    return "\n".join(out)


def swim_lanes(steps: Sequence[Mapping[str, Any]]) -> str:
    """One lane per worker, one box per I/O step; faults and crashes marked, the violating step highlighted."""
    workers = list(dict.fromkeys(str(s["worker"]) for s in steps))
    box_w, box_h, lane_h, left, top = 120, 34, 46, 70, 20
    width = left + box_w * len(steps) + 10
    height = top + lane_h * len(workers) + 10
    # Fits the page by shrinking down to 60 % (a shrunk race is short: its last, violating step stays in
    # sight), and scrolls beyond that rather than shrink its text out of reading.
    style = f"width:100%;max-width:{width}px;min-width:{int(width * 0.6)}px;height:auto"
    out = [f'<svg class="swimlanes" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" style="{style}" role="img" aria-label="timeline">']  # fmt: skip
    for i, worker in enumerate(workers):
        y = top + i * lane_h
        out.append(f'<rect class="lane" x="0" y="{y}" width="{width}" height="{lane_h}" '
                   f'fill="{"#f7f7f7" if i % 2 else "#ffffff"}"/>')  # fmt: skip
        out.append(f'<text x="8" y="{y + lane_h / 2 + 4}" class="lane-label">{_e(worker)}</text>')
    for column, step in enumerate(steps):
        x = left + column * box_w
        y = top + workers.index(str(step["worker"])) * lane_h + (lane_h - box_h) / 2
        classes = ["step"] + (["fault"] if step.get("fault") else []) + (["crash"] if step.get("crash") else [])
        classes += ["violating"] if step.get("violating") else []
        fill = "#fff3b0" if step.get("violating") else "#e3f2fd"
        stroke = "#c62828" if step.get("fault") or step.get("crash") else "#1565c0"
        label = f"{step.get('step')}: {step.get('operation', '')}"
        out.append(f'<g class="{" ".join(classes)}"><title>{_e(label)} / {_e(step.get("io", ""))}</title>'
                   f'<rect x="{x + 2}" y="{y}" width="{box_w - 4}" height="{box_h}" rx="4" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="{3 if classes != ["step"] else 1}"/>'
                   f'<text x="{x + 6}" y="{y + 14}" class="op">{_e(_short(label, 17))}</text>'
                   f'<text x="{x + 6}" y="{y + 28}" class="io">{_e(_short(str(step.get("io", "")), 18))}</text></g>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def _soak(soak: Mapping[str, Any]) -> str:
    """The soak's history: its figures, the faults, the timeline, and the operations that broke a guarantee."""
    out = ['<section id="soak"><h2>Soak history</h2>']
    figures = soak.get("figures") or {}
    if figures:
        out.append('<table class="figures">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                                        for k, v in figures.items()) + "</table>")  # fmt: skip
    out.append('<h3>Faults</h3><ul class="nemesis">')
    for event in soak.get("nemesis", []):
        out.append(f'<li class="nemesis-event" data-fault="{_e(event.get("fault"))}">{_e(event.get("text", ""))}</li>')
    out.append("</ul>")
    out.append("<h3>Timeline: one lane per Celery worker, one row per task process slot</h3>")
    out.append(f'<div class="lanes">{soak_timeline(soak)}</div>')
    violating = [o for o in soak.get("operations", []) if o.get("violates")]
    if violating:
        out.append('<h3>Operations that break a guarantee</h3><table class="violations">'
                   "<tr><th>guarantee</th><th>operation</th></tr>")  # fmt: skip
        for op in violating:
            out.append(f'<tr class="violation" id="op-{_e(op["index"])}"><td>{_e(", ".join(op["violates"]))}</td>'
                       f'<td><code>{_e(op.get("text", ""))}</code></td></tr>')  # fmt: skip
        out.append("</table>")
    out.append("</section>")
    return "\n".join(out)


def soak_timeline(soak: Mapping[str, Any]) -> str:
    """Wall-clock swim lanes: a row per slot of each worker, a bar per task process, a box per operation;
    faults as bands over the lanes they hit (a paused worker's, a killed process's, all for a service)."""
    start, end = float(soak.get("start", 0.0)), float(soak.get("end", 1.0))
    span = max(end - start, 1e-6)
    left, row_h, top, plot_w = 150, 16, 28, 1400
    rows: list[tuple[str, list[str]]] = [(lane["worker"], row) for lane in soak.get("lanes", []) for row in lane["rows"]]
    where = {process: i for i, (_, row) in enumerate(rows) for process in row}
    height = top + row_h * max(len(rows), 1) + 10
    width = left + plot_w + 10
    x = lambda t: left + (float(t) - start) / span * plot_w  # noqa: E731
    out = [f'<svg class="soak-timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="soak timeline">']  # fmt: skip
    for tick in range(0, int(span) + 1, max(10, int(span / 12) // 10 * 10 or 10)):
        out.append(f'<text x="{x(start + tick):.1f}" y="12" class="tick">{tick}s</text>'
                   f'<line x1="{x(start + tick):.1f}" y1="16" x2="{x(start + tick):.1f}" y2="{height}" stroke="#eeeeee"/>')  # fmt: skip
    shown: set[str] = set()
    for i, (worker, _) in enumerate(rows):
        y = top + i * row_h
        first = worker not in shown
        shown.add(worker)
        out.append(f'<rect class="lane" data-worker="{_e(worker)}" x="0" y="{y}" width="{width}" height="{row_h}" '
                   f'fill="{"#f7f7f7" if sorted(shown).index(worker) % 2 else "#ffffff"}"/>')  # fmt: skip
        if first:
            out.append(f'<text x="6" y="{y + 12}" class="lane-label">{_e(worker)}</text>')
    for event in soak.get("nemesis", []):
        hit = [i for i, (worker, row) in enumerate(rows) if event.get("target") in (worker, *row)] or range(len(rows))
        t0, t1 = float(event["start"]), float(event.get("end") or event["start"])
        x0, x1 = x(t0), max(x(t1), x(t0) + 3)
        y0, y1 = top + min(hit) * row_h, top + (max(hit) + 1) * row_h
        out.append(f'<g class="nemesis" data-fault="{_e(event.get("fault"))}"><title>{_e(event.get("text", ""))}</title>'
                   f'<rect x="{x0:.1f}" y="{y0}" width="{x1 - x0:.1f}" height="{y1 - y0}" fill="#c62828" '
                   f'fill-opacity="0.15" stroke="#c62828"/><text x="{x0 + 2:.1f}" y="{top - 2}" class="fault">'
                   f"{_e(_short(str(event.get('fault')), 12))}</text></g>")  # fmt: skip
    for process, info in (soak.get("processes") or {}).items():
        if process not in where:
            continue
        y = top + where[process] * row_h
        x0 = x(info["start"])
        out.append(f'<g class="process"><title>{_e(process)}: {_e(info.get("label", ""))}</title>'
                   f'<rect x="{x0:.1f}" y="{y + 6}" width="{max(x(info["end"]) - x0, 1):.1f}" height="4" '
                   f'fill="#90a4ae"/></g>')  # fmt: skip
    colours = {"push": "#1565c0", "pull": "#2e7d32", "claim": "#6a1b9a", "release": "#8e24aa", "scope": "#ef6c00"}
    for op in soak.get("operations", []):
        if op["process"] not in where:
            continue
        y = top + where[op["process"]] * row_h
        x0 = x(op["start"])
        w = max(x(op["end"] if op.get("end") is not None else end) - x0, 2)
        classes = ["op", str(op.get("op"))] + (["violating"] if op.get("violates") else [])
        classes += ["died"] if op.get("outcome") == "died" else []
        stroke = "#c62828" if op.get("violates") or op.get("outcome") == "died" else "none"
        out.append(f'<g class="{" ".join(classes)}" id="timeline-op-{_e(op["index"])}"><title>{_e(op.get("text", ""))}'
                   f'</title><rect x="{x0:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 4}" '
                   f'fill="{colours.get(str(op.get("op")), "#455a64")}" stroke="{stroke}" '
                   f'stroke-width="{3 if stroke != "none" else 0}"/></g>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def _runs(runs: Sequence[Mapping[str, Any]]) -> str:
    out = ['<section id="runs"><h2>DAG runs</h2>']
    if not runs:
        out.append("<p>No DAG ran in this session.</p>")
    for run in runs:
        state = str(run.get("state", ""))
        # The run's state and its test's outcome are two facts: a run can succeed in a test that fails.
        outcome = str(run.get("outcome") or "")
        test = f'test {_badge(outcome)} ' if outcome else ""
        out.append(f'<div class="run" data-state="{_e(state)}" data-outcome="{_e(outcome)}">'
                   f'<h3>{_e(run.get("dag_id", ""))} run {_badge(state)}</h3>'
                   f'<p class="test">{test}{_e(run.get("test", ""))} &middot; {_e(run.get("run_id", ""))}</p>'
                   "<table><tr><th>task</th><th>state</th><th>try</th><th>error</th></tr>")  # fmt: skip
        for task in run.get("tasks", []):
            out.append(f'<tr class="task"><td>{_e(task.get("task", ""))}</td><td>{_badge(str(task.get("state", "")))}</td>'
                       f'<td>{_e(task.get("try_number", ""))}</td><td>{_e(task.get("error") or "")}</td></tr>')  # fmt: skip
        out.append("</table></div>")
    out.append("</section>")
    return "\n".join(out)


def _bench(document: Mapping[str, Any]) -> str:
    rows = [b for b in document.get("backends", []) if not b.get("error")]
    failed = [b for b in document.get("backends", []) if b.get("error")]
    size = rows[0]["payload_bytes"] if rows else 0
    out = ['<section id="bench"><h2>Benchmarks</h2>']
    if document.get("caveat"):
        out.append(f'<p class="caveat">{_e(document["caveat"])}</p>')
    latency = [(b["label"], [("push p50", b["push"]["p50_ms"]), ("pull p50", b["pull"]["p50_ms"]),
                             ("pull p99", b["pull"]["p99_ms"])]) for b in rows]  # fmt: skip
    out.append(f"<h3>Latency at a {_size(size)} payload (ms)</h3>")
    out.append(bar_chart(latency, chart_id="latency", unit="ms"))
    footprint = [(b["label"], [("xcom table / 100 runs", b["xcom_table_bytes_per_100_runs"])]) for b in rows]
    out.append("<h3>Metadata DB footprint: xcom table growth per 100 DAG runs (bytes, log scale)</h3>")
    out.append(bar_chart(footprint, chart_id="footprint", unit="B", log=True))
    for b in failed:
        out.append(f'<p class="bench-failure">{_e(b["label"])} failed: {_e(b["error"])}</p>')
    out.append("</section>")
    return "\n".join(out)


def bar_chart(groups: Sequence[tuple[str, Sequence[tuple[str, float]]]], *, chart_id: str, unit: str,
              log: bool = False) -> str:  # fmt: skip
    """Horizontal bars, one group per label, one bar per series; inline SVG."""
    palette = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a"]
    values = [v for _, series in groups for _, v in series if v and v > 0]
    top = max(values, default=1.0)
    scale = (lambda v: math.log10(max(v, 1)) / max(math.log10(max(top, 10)), 1)) if log else (lambda v: v / top)
    left, bar_h, gap, width = 200, 14, 10, 760
    bars = sum(len(series) for _, series in groups)
    height = 30 + bars * bar_h + len(groups) * gap
    out = [f'<svg class="chart" id="{chart_id}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">']  # fmt: skip
    y = 10
    for label, series in groups:
        out.append(f'<text x="0" y="{y + bar_h}" class="group">{_e(_short(label, 28))}</text>')
        for i, (name, value) in enumerate(series):
            length = max(1.0, scale(value or 0) * (width - left - 230))
            out.append(f'<g class="bar"><title>{_e(label)} {_e(name)}: {value:,.1f} {unit}</title>'
                       f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar_h - 2}" fill="{palette[i % 4]}"/>'
                       f'<text x="{left + length + 4:.1f}" y="{y + bar_h - 3}" class="value">{_e(name)} '
                       f"{_human(value, unit)}</text></g>")  # fmt: skip
            y += bar_h
        y += gap
    out.append("</svg>")
    return "".join(out)


# -- helpers -----------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _badge(state: str, words: str | None = None) -> str:
    colour = _STATE_COLOURS.get(state, "#455a64")
    return f'<span class="badge" style="background:{colour}">{_e(words or state)}</span>'


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _size(count: int) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} B"


def _human(value: float, unit: str) -> str:
    if unit == "B":
        for name, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
            if value >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    return f"{value:.1f} {unit}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#212121;max-width:1200px}
h1{font-size:22px}h2{border-bottom:2px solid #e0e0e0;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#fafafa}pre{margin:0;white-space:pre-wrap;font-size:12px;max-width:760px}
.badge{color:#fff;border-radius:10px;padding:1px 8px;font-size:12px}.test{color:#616161;font-size:13px}
.caveat{background:#fff8e1;border-left:4px solid #ffb300;padding:6px 10px;font-size:13px}
.bench-failure{color:#c62828}svg text{font-size:11px;font-family:inherit}svg .lane-label{font-weight:600}
svg .op{font-weight:600}.counterexample{margin:12px 0 24px}code.replay{background:#f5f5f5;padding:2px 4px}
.lanes{overflow-x:auto}.discovered{font-size:13px;color:#424242}.first{font-size:11px;color:#616161}
.harness{color:#ef6c00;font-size:13px}svg .tick{fill:#757575}svg .fault{fill:#c62828;font-size:9px}
.nemesis{font-size:13px}.violations code{font-size:12px}
"""
