"""One soak, start to end: deployment up, DAGs in, runs triggered, faults injected, history judged, all stopped."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcomsim.soak import checks, history, nemesis, workload
from xcomsim.soak.deployment import THRESHOLD, Deployment, ExternalDeployment, LocalDeployment, Settings
from xcomsim.soak.errors import SoakError
from xcomsim.soak.processes import signals_as_exit

OBSERVED_EXIT = "airflow-exit"  # not injected: an Airflow process the soak had to start again
GC_EVERY = 60.0  # seconds between sweeps during the workload
DRAIN_SECONDS = 180.0  # how long runs still in flight at the end may take to finish


@dataclass(frozen=True)
class Options:
    minutes: float = 3.0
    backend: str = "xcomsim.backend.ExclusiveXCom"
    workers: int = 2
    seed: int = 0
    faults: frozenset[str] = frozenset(nemesis.KINDS)
    runs_in_flight: int = 6
    skew_seconds: int = 0  # 0: drawn from the seed when "skew" is among the faults
    airflow_url: str | None = None
    db_url: str | None = None
    s3_endpoint: str | None = None
    dags_folder: str | None = None
    history_dir: str | None = None
    logs_to: str | None = None  # the deployment's logs are copied here when it stops
    config: tuple[tuple[str, str], ...] = ()  # ("section.key", value): Airflow options set on the local deployment


@dataclass
class Result:
    judged: checks.Judged
    history: history.History
    end_state: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)

    @property
    def broken(self) -> list[str]:
        return checks.broken(self.judged)


def soak(options: Options, say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> Result:
    """Run a soak; raises SoakError (one line) for bad input, after stopping everything it started."""
    deployment = _deployment(options)
    with signals_as_exit():
        try:
            return _soak(deployment, options, say)
        finally:
            say("stopping the deployment")
            if options.logs_to and isinstance(deployment, LocalDeployment):
                deployment.save_logs(Path(options.logs_to))
            deployment.close()


def _deployment(options: Options) -> Deployment:
    if options.airflow_url:
        flags = {"db_url": "--db", "s3_endpoint": "--s3-endpoint", "dags_folder": "--dags-folder",
                 "history_dir": "--history-dir"}  # fmt: skip
        missing = [flag for name, flag in flags.items() if not getattr(options, name)]
        if missing:
            raise SoakError(f"--airflow-url needs {', '.join(missing)} too")
        return ExternalDeployment(options.airflow_url, options.db_url, options.s3_endpoint, options.dags_folder,
                                  options.history_dir, options.backend)  # fmt: skip
    return LocalDeployment(Settings(backend=options.backend, workers=options.workers, skew_seconds=skew_for(options),
                                    extra_config=dict(options.config)))  # fmt: skip


def skew_for(options: Options) -> int:
    """The last worker's clock offset: none without the skew fault, else ten minutes behind or ahead (seed)."""
    if "skew" not in options.faults:
        return 0
    skew = options.skew_seconds or [-600, 600][options.seed % 2]
    return max(skew, -max_behind())


def max_behind() -> int:
    """How far behind a worker's clocks may be set: libfaketime shifts the monotonic clock too, which must
    stay positive (a machine up for less than ten minutes cannot hold a worker ten minutes behind)."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 600
    return max(0, int(uptime) - 60)


def _soak(deployment: Deployment, options: Options, say: Callable[[str], None]) -> Result:
    began = time.monotonic()
    say(f"starting a deployment ({deployment.__class__.__name__}, soak id {deployment.soak_id})")
    deployment.start()
    plan = workload.Plan.draw(options.seed, THRESHOLD, "kill" in options.faults)
    files = workload.write_dags(deployment.dags_folder, deployment.soak_id, plan)
    deployment.start_airflow()
    figures: dict[str, Any] = {"started_in": dict(getattr(deployment, "started_in", {})),
                               "start_seconds": round(time.monotonic() - began, 1)}  # fmt: skip
    if isinstance(deployment, LocalDeployment):
        figures["memory_mib"] = round(deployment.memory_mib())
    say(f"deployment up in {figures['start_seconds']}s: {len(deployment.workers)} Celery workers"
        + (f", {figures.get('memory_mib')} MiB" if "memory_mib" in figures else ""))  # fmt: skip
    result = phase(deployment, options, deployment.soak_id, plan, files, say)
    result.figures = {**figures, **result.figures}
    return result


def phase(deployment: Deployment, options: Options, dags: str, plan: workload.Plan, files: dict[str, Path],
          say: Callable[[str], None], drain: float = DRAIN_SECONDS) -> Result:  # fmt: skip
    """The workload and the nemesis for ``options.minutes`` on DAGs of their own (named after ``dags``), then
    the runs in flight drained (at most ``drain`` seconds), the end state read and the history judged."""
    client = deployment.client()
    ids = workload.dag_ids(dags)
    workload.wait_for_dags(client, list(ids.values()), time.monotonic() + 120, files)
    seconds = options.minutes * 60
    schedule = nemesis.Schedule.draw(options.seed, set(options.faults), seconds, deployment.workers)
    say(f"workload for {options.minutes:g} min, seed {options.seed}; faults: {schedule.describe() or 'none'}")
    chaos = nemesis.Nemesis(deployment, schedule, options.seed)
    tracker = workload.RunTracker(client, list(ids.values()), options.runs_in_flight)
    gc_events: list[dict[str, Any]] = []
    sweeping: threading.Thread | None = None
    start, began = time.monotonic(), time.time()
    last_gc, last_say = start, start
    choose = lambda n: ids["claims"] if n % 3 == 2 else ids["push"]  # noqa: E731 - two pushes per claim race
    while (elapsed := time.monotonic() - start) < seconds:
        tracker.refresh()
        tracker.top_up(choose)
        chaos.tick(elapsed)
        _revive(deployment, chaos, say)
        if time.monotonic() - last_gc > GC_EVERY and _sweeper(deployment) and not (sweeping and sweeping.is_alive()):
            # in a thread: a sweep's readback takes seconds to a minute under load, and the nemesis keeps its time
            sweeping = threading.Thread(target=lambda: gc_events.extend(_gc(deployment, grace=None)), daemon=True)
            sweeping.start()
            last_gc = time.monotonic()
        if time.monotonic() - last_say > 30:
            say(f"  {elapsed:.0f}s: runs {tracker.states()}; faults so far {len(chaos.events)}")
            last_say = time.monotonic()
        time.sleep(1)
    chaos.finish()
    if sweeping is not None:
        sweeping.join(timeout=300)
    workload_seconds = time.monotonic() - start
    say(f"workload done; waiting for {len(tracker.active())} run(s) in flight (at most {drain:.0f}s)")
    deadline = time.monotonic() + drain
    while tracker.active() and time.monotonic() < deadline:
        time.sleep(2)
        _revive(deployment, chaos, say)
        tracker.refresh()
    client.close()
    end_state = _readback(deployment, list(ids.values()), gc=_sweeper(deployment))
    if end_state.get("gc"):
        gc_events += _gc_ops(end_state["gc"])
    events = history.load_events(deployment.history_dir, deployment.skewed) + gc_events
    found = history.build(events, chaos.events)
    judged = checks.judge(found, end_state, plan.as_dict(), checks.Claims(**end_state["claims"]))
    figures = {"workload_began": began, **_throughput(tracker, end_state, found, workload_seconds)}
    return Result(judged, found, end_state, figures, tracker.triggered, chaos.events)


def _revive(deployment: Deployment, chaos: nemesis.Nemesis, say: Callable[[str], None]) -> None:
    """An Airflow process that exited is started again and the exit is an event of the history."""
    if not isinstance(deployment, LocalDeployment):
        return
    for name, code, tail in deployment.revive():
        say(f"  Airflow's {name} exited (code {code}); started again. Its last lines: {tail[-300:]}")
        chaos.observed(OBSERVED_EXIT, name, exit=code, tail=tail[-500:])


def _sweeper(deployment: Deployment) -> bool:
    return isinstance(deployment, LocalDeployment) and deployment.backend.startswith("xcomsim.")


def _readback(deployment: Deployment, dag_ids: list[str], *, gc: bool, only_gc: bool = False,
              grace: float | None = 0) -> dict[str, Any]:  # fmt: skip
    if not isinstance(deployment, LocalDeployment):
        raise SoakError("reading an external deployment's end state needs its Airflow configuration here")
    folder = deployment.data
    spec = folder / f"readback-{time.monotonic_ns()}.json"
    out = spec.with_suffix(".out.json")
    spec.write_text(json.dumps({"db_url": deployment.db_url, "dag_ids": dag_ids, "gc": gc, "gc_grace": grace,
                                "only_gc": only_gc}))  # fmt: skip
    deployment.supervisor.run("readback", [sys.executable, "-m", "xcomsim.soak.readback", str(spec), str(out)],
                              timeout=300)  # fmt: skip
    return json.loads(out.read_text())


def _gc(deployment: Deployment, grace: float | None) -> list[dict[str, Any]]:
    try:
        state = _readback(deployment, [], gc=True, only_gc=True, grace=grace)
    except SoakError:
        return []  # a sweep that failed (a store down by the nemesis) deleted nothing
    return _gc_ops(state["gc"]) if state.get("gc") else []


def _gc_ops(gc: dict[str, Any]) -> list[dict[str, Any]]:
    """A sweep as history events: the sweep begun and ended, one delete per object it removed."""
    base = {"op": "gc", "pid": 0, "worker": "soak-gc", "mono": 0}
    events = [{**base, "phase": "begin", "t": gc["began"]}, {**base, "phase": "ok", "t": gc["ended"],
                                                                "deleted": len(gc["deleted"])}]  # fmt: skip
    return events


def _throughput(tracker: workload.RunTracker, end_state: dict[str, Any], found: history.History,
                seconds: float) -> dict[str, Any]:  # fmt: skip
    import statistics

    done = [e for e in tracker.triggered.values() if e["state"] in ("success", "failed")]
    tis = [t for t in end_state.get("task_instances", []) if t["state"] in ("success", "failed")]
    durations = sorted(t["duration"] for t in tis if t.get("duration") and t["task_id"] == "pushers")
    pulls = sorted(o.end - o.start for o in found.of("pull") if o.end is not None and o.outcome == "ok")
    pushes = sorted(o.end - o.start for o in found.of("push") if o.end is not None and o.outcome == "ok")

    def pct(values: list[float], q: float) -> float | None:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else None

    return {
        "workload_seconds": round(seconds, 1), "runs_done": len(done),
        "runs_per_minute": round(len(done) / (seconds / 60), 2) if seconds else None,
        "task_instances_per_second": round(len(tis) / seconds, 2) if seconds else None,
        "pusher_task_seconds_p50": round(statistics.median(durations), 2) if durations else None,
        "push_ms_p50": pct(pushes, 0.5), "push_ms_p90": pct(pushes, 0.9),
        "pull_ms_p50": pct(pulls, 0.5), "pull_ms_p90": pct(pulls, 0.9),
        "xcom_table_bytes": end_state.get("xcom_table_bytes"),
        "run_states": tracker.states(),
    }  # fmt: skip


def describe(result: Result) -> str:
    lines = [result.judged.verdicts.table().replace("xcomsim conformance verdict", "xcomsim soak verdict", 1)]
    lines += [f"  note: {note}" for note in result.judged.notes]
    in_task = [e for e in result.history.nemesis if e not in result.faults]  # tasks that killed themselves
    injected = [e for e in result.faults if e["fault"] != OBSERVED_EXIT] + in_task
    kinds = sorted({e["fault"] for e in injected})
    lines.append(f"faults injected: {len(injected)} ({', '.join(kinds) or 'none'})")
    exits = [e["target"] for e in result.faults if e["fault"] == OBSERVED_EXIT]
    if exits:
        lines.append(f"Airflow processes that exited and were started again: {', '.join(exits)}")
    f = result.figures
    lines.append(f"runs: {f.get('run_states')}; {f.get('runs_per_minute')} runs/min, "
                 f"{f.get('task_instances_per_second')} task instances/s; pull p50/p90 {f.get('pull_ms_p50')}/"
                 f"{f.get('pull_ms_p90')} ms; xcom table {f.get('xcom_table_bytes')} B")  # fmt: skip
    lines.append(f"history: {len(result.history.operations)} operations from {len(result.history.processes())} "
                 f"processes; deployment up in {f.get('start_seconds')}s, {f.get('memory_mib', '?')} MiB")  # fmt: skip
    return "\n".join(lines)


def as_json(result: Result) -> dict[str, Any]:
    verdicts = [{"name": e.name, "verdict": e.verdict, "detail": e.counterexample or e.reason,
                 "violating": result.judged.violating.get(e.name, [])} for e in result.judged.verdicts.ordered()]  # fmt: skip
    return {"verdicts": verdicts, "notes": result.judged.notes, "figures": result.figures,
            "faults": result.faults + [e for e in result.history.nemesis if e not in result.faults],
            "runs": result.runs, "operations": [vars(o) for o in result.history.operations]}  # fmt: skip


def write_json(result: Result, path: str | Path) -> None:
    Path(path).write_text(json.dumps(as_json(result), indent=1, default=str) + "\n")
