"""The same workload with two backends on one deployment, alternating, without faults: the seeds' claims, measured.

Between phases only Airflow's processes restart (with the other backend); the
stores stay. Each phase has DAGs of its own, so its rows, task instances and
history are its own. Figures per backend are medians over its phases:
DAG runs per minute, task instances per second, a pusher task's time (Airflow's
duration) and CPU (the task process's, from its fork to its last push), push
and pull latency (p50/p90, from the history) and the bytes its values take in
the xcom table.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from xcomsim.soak import history, workload
from xcomsim.soak.deployment import THRESHOLD, LocalDeployment, Settings
from xcomsim.soak.processes import signals_as_exit
from xcomsim.soak.run import DRAIN_SECONDS, _readback


def compare(backends: list[str], minutes: float, rounds: int, seed: int, runs_in_flight: int,
            say: Callable[[str], None], config: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """``config``: Airflow options ("section.key" -> value) set on the deployment (say, where values are offloaded)."""
    deployment = LocalDeployment(Settings(backend=backends[0], extra_config=dict(config or {})))
    plan = dataclasses.replace(workload.Plan.draw(seed, THRESHOLD, False), flaky_rate=0.0, repush=False)
    phases = [(r, b) for r in range(rounds) for b in (backends if r % 2 == 0 else backends[::-1])]
    with signals_as_exit():
        try:
            deployment.start()
            files = {}
            for index, (_, backend) in enumerate(phases):
                files[index] = workload.write_dags(deployment.dags_folder, f"{deployment.soak_id}-p{index}", plan)
            deployment.start_airflow()
            results: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
            for index, (round_, backend) in enumerate(phases):
                if index:  # the first phase runs on the deployment as it started (its backend, its history)
                    deployment.switch_backend(backend, deployment.data / f"history-{index}")
                say(f"round {round_ + 1}/{rounds}: {backend} for {minutes:g} min")
                results[backend].append(_phase(deployment, plan, f"{deployment.soak_id}-p{index}", files[index],
                                               minutes, runs_in_flight))  # fmt: skip
                say(f"  {results[backend][-1]}")
        finally:
            deployment.close()
    table = {b: _median(phases_) for b, phases_ in results.items()}
    return {"backends": table, "phases": results, "minutes": minutes, "rounds": rounds, "seed": seed,
            "machine": machine(), "plan": plan.as_dict()}  # fmt: skip


def _phase(deployment: LocalDeployment, plan: workload.Plan, soak_id: str, files: dict[str, Any], minutes: float,
           runs_in_flight: int) -> dict[str, Any]:  # fmt: skip
    client = deployment.client()
    ids = workload.dag_ids(soak_id)
    workload.wait_for_dags(client, list(ids.values()), time.monotonic() + 120, files)
    tracker = workload.RunTracker(client, [ids["push"]], runs_in_flight)
    start = time.monotonic()
    while time.monotonic() - start < minutes * 60:
        tracker.refresh()
        tracker.top_up(lambda n: ids["push"])
        time.sleep(1)
    deadline = time.monotonic() + DRAIN_SECONDS
    while tracker.active() and time.monotonic() < deadline:
        time.sleep(2)
        tracker.refresh()
    client.close()
    end_state = _readback(deployment, [ids["push"]], gc=False)
    found = history.build(history.load_events(deployment.history_dir, {}))
    runs = [e for e in tracker.triggered.values() if e["ended"]]
    span = max(e["ended"] for e in runs) - min(e["triggered"] for e in tracker.triggered.values()) if runs else 0
    tis = [t for t in end_state["task_instances"] if t["state"] in ("success", "failed") and t["start"]]
    ti_span = (max(t["end"] for t in tis) - min(t["start"] for t in tis)) if tis else 0
    pushers = [t["duration"] for t in tis if t["task_id"] == "pushers" and t["duration"]]
    cpu = [e["cpu"] for e in found.events if e["op"] == "task" and e.get("phase") == "pushed"]
    pulls = sorted(o.end - o.start for o in found.of("pull") if o.outcome == "ok" and o.end)
    pushes = sorted(o.end - o.start for o in found.of("push") if o.outcome == "ok" and o.end)
    push_cpu = [(o.fields["cpu"], o.fields.get("key")) for o in found.of("push") if o.fields.get("cpu") is not None]
    return {
        "runs": len(runs), "runs_per_minute": round(len(runs) / (span / 60), 2) if span else None,
        "task_instances_per_second": round(len(tis) / ti_span, 2) if ti_span else None,
        "pusher_seconds_p50": _round(statistics.median(pushers)) if pushers else None,
        "pusher_cpu_seconds_p50": _round(statistics.median(cpu)) if cpu else None,
        "push_ms_p50": _ms(pushes, 0.5), "push_ms_p90": _ms(pushes, 0.9),
        "pull_ms_p50": _ms(pulls, 0.5), "pull_ms_p90": _ms(pulls, 0.9),
        "xcom_value_bytes_per_run": round(end_state["xcom_value_bytes"] / len(runs)) if runs else None,
        "failed_runs": sum(1 for e in runs if e["state"] == "failed"),
        "push_cpu_ms_p50": {key: _ms(sorted(c for c, k in push_cpu if k == key), 0.5)  # what each push costs its process
                            for key in sorted({k for _, k in push_cpu})},
    }  # fmt: skip


def _round(x: float) -> float:
    return round(x, 3)


def _ms(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else None


def _median(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the phases (a figure per key, such as each push's CPU, per key)."""
    keys = dict.fromkeys(key for p in phases for key in p)
    out: dict[str, Any] = {}
    for key in keys:
        values = [p[key] for p in phases if p.get(key) is not None]
        if values and isinstance(values[0], dict):
            out[key] = _median(values)
        else:
            out[key] = round(statistics.median(values), 3) if values else None
    return out


def machine() -> str:
    import os

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} x {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def table(result: dict[str, Any]) -> str:
    """A markdown table, one row per backend, and the ratio of the first to the second."""
    rows = result["backends"]
    names = list(rows)
    columns = [("runs_per_minute", "DAG runs/min"), ("task_instances_per_second", "task instances/s"),
               ("pusher_seconds_p50", "pusher task s (p50)"), ("pusher_cpu_seconds_p50", "pusher CPU s (p50)"),
               ("push_ms_p50", "push ms p50"), ("pull_ms_p50", "pull ms p50"), ("pull_ms_p90", "pull ms p90"),
               ("xcom_value_bytes_per_run", "xcom bytes/run")]  # fmt: skip
    lines = ["| backend | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---:|" * len(columns)]  # fmt: skip
    for name in names:
        lines.append(f"| {name.rpartition('.')[2]} | " + " | ".join(str(rows[name][k]) for k, _ in columns) + " |")
    if len(names) == 2:
        a, b = rows[names[0]], rows[names[1]]
        ratios = [f"{a[k] / b[k]:.2f}x" if a[k] and b[k] else "-" for k, _ in columns]
        lines.append(f"| ratio | " + " | ".join(ratios) + " |")
    for name in names:  # where a pusher's CPU goes: each of its pushes, in the order pushed
        costs = rows[name].get("push_cpu_ms_p50") or {}
        if costs:
            each = ", ".join(f"{key} {costs[key]}" for key in sorted(costs, key=_push_order))
            lines.append(f"{name.rpartition('.')[2]}: CPU ms of a push (p50), by key: {each}")
    return "\n".join(lines)


def _push_order(key: str) -> int:
    from xcomsim.soak.tasks import PUSH_KEYS

    return PUSH_KEYS.index(key) if key in PUSH_KEYS else len(PUSH_KEYS)
