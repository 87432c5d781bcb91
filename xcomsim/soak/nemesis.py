"""Faults on a schedule drawn from the seed, injected into the running deployment.

* ``kill``: SIGKILL of a task process in the middle of a push (one that has
  recorded "push begun" and not its end), and, planned in the DAG, tasks that
  SIGKILL themselves between the guard and the row (``probe.kill_before_row``);
* ``pause``: SIGSTOP of every process of one worker (the worker, its pool and
  the task processes it forked) for longer than the heartbeat timeout and the
  guard lease, then SIGCONT: its tasks come back as zombies;
* ``skew``: the last worker runs under ``faketime`` minutes behind or ahead
  (set when the deployment starts; recorded here as an event);
* ``restart``: redis-server, and the S3 endpoint, stopped and started again on
  the same port; PostgreSQL's connections dropped (``pg_terminate_backend``).

Each fault is an event of the history, with the time it began and ended.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcomsim.soak.processes import signal_marked

KINDS = ("kill", "pause", "skew", "restart")
PAUSE_SECONDS = 35.0  # longer than the heartbeat timeout (20 s) and the guard lease (15 s)
DOWN_SECONDS = 6.0
KILL_PATIENCE = 60.0  # seconds a kill waits for a push in flight before it is dropped


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the workload starts
    kind: str  # kill, pause, restart-redis, restart-s3, drop-db
    target: str = ""


@dataclass
class Schedule:
    faults: list[Fault] = field(default_factory=list)

    @classmethod
    def draw(cls, seed: int, kinds: set[str], seconds: float, workers: list[str]) -> Schedule:
        """Every chosen kind at least once, spread over the middle of the run, from the seed alone."""
        rng = random.Random(f"nemesis/{seed}")
        planned: list[tuple[str, str]] = []
        if "kill" in kinds:
            planned += [("kill", "")] * max(2, int(seconds // 45))
        if "pause" in kinds and workers:
            planned.append(("pause", rng.choice(workers[:-1] or workers)))  # not the skewed one: both faults seen
        if "restart" in kinds:
            planned += [("restart-redis", ""), ("restart-s3", ""), ("drop-db", "")]
        window = max(10.0, seconds * 0.7)
        faults = [Fault(round(seconds * 0.1 + rng.random() * window, 1), kind, target) for kind, target in planned]
        return cls(sorted(faults, key=lambda f: f.at))

    def describe(self) -> str:
        return ", ".join(f"{f.kind}{'(' + f.target + ')' if f.target else ''}@{f.at:.0f}s" for f in self.faults)


class Nemesis:
    """Injects a schedule's faults as the workload runs; ``events`` is what it did, and when."""

    def __init__(self, deployment: Any, schedule: Schedule, seed: int):
        self.deployment = deployment
        self.schedule = schedule
        self.pending = list(schedule.faults)
        self.events: list[dict[str, Any]] = []
        self.rng = random.Random(f"nemesis-targets/{seed}")
        self.resume: list[tuple[float, Callable[[], None], dict[str, Any]]] = []
        self.elapsed = 0.0
        self.dropped: list[Fault] = []  # kills that found no push in flight within KILL_PATIENCE
        self.killed: set[int] = set()  # a killed process stays in /proc until it is reaped: never struck twice
        for worker, offset in deployment.skewed.items():
            self.events.append({"t": time.time(), "fault": "skew", "target": worker, "offset": offset,
                                "ended": None})  # fmt: skip

    def tick(self, elapsed: float) -> None:
        """Inject what is due, end what has run its time (called every second or so; never blocks long)."""
        self.elapsed = elapsed
        now = time.monotonic()
        for due in [r for r in self.resume if r[0] <= now]:
            self.resume.remove(due)
            due[1]()
            due[2]["ended"] = time.time()
        while self.pending and self.pending[0].at <= elapsed:
            fault = self.pending.pop(0)
            getattr(self, "_" + fault.kind.replace("-", "_"))(fault)

    def finish(self) -> None:
        """End every fault still in progress (a paused worker resumed, a stopped service started)."""
        for _, end, event in self.resume:
            end()
            event["ended"] = time.time()
        self.resume.clear()

    def observed(self, what: str, target: str, **extra: Any) -> None:
        """Something the deployment did on its own (an exit), on the same timeline as the faults."""
        self._event(what, target, **extra)["ended"] = time.time()

    def _event(self, fault: str, target: str, **extra: Any) -> dict[str, Any]:
        event = {"t": time.time(), "fault": fault, "target": target, "ended": None, **extra}
        self.events.append(event)
        return event

    # ------------------------------------------------------------------ faults
    def _kill(self, fault: Fault) -> None:
        """SIGKILL a task process that has begun a push and not ended it; if none is pushing, retry in 1 s."""
        victim = self._pushing()
        if victim is None:
            self._later(fault)
            return
        pid, what = victim
        import os

        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self._later(fault)
            return
        self.killed.add(pid)
        self._event("kill", f"pid {pid}", during=what)["ended"] = time.time()

    def _later(self, fault: Fault) -> None:
        """Try a kill again a second from now (no task is pushing), in its place among the other faults, for
        at most a minute after it was first due: a kill that finds no push to interrupt is dropped, never
        holds the rest back, and never spins (the retry is due after the current tick, however late it runs)."""
        first = float(fault.target or fault.at)
        again = max(fault.at, self.elapsed) + 1
        if again - first <= KILL_PATIENCE:
            self.pending.append(Fault(again, "kill", str(first)))
            self.pending.sort(key=lambda f: f.at)
        else:
            self.dropped.append(fault)

    def _pushing(self) -> tuple[int, str] | None:
        """A task process whose last recorded event begins a push (or its row write): (pid, what it does)."""
        folder: Path = self.deployment.history_dir
        candidates = []
        for path in folder.glob("*.jsonl"):
            lines = path.read_text(errors="replace").splitlines()
            last = _last_event(lines)
            if last and last.get("op") in ("push", "row") and last.get("phase") == "begin" and last["pid"] not in self.killed and _alive(last["pid"]):
                candidates.append((last["pid"], f"{last.get('op')} {last.get('key') or last.get('coordinate')} "
                                                f"of {last.get('task_id')}[{last.get('map_index')}] {last.get('run_id')}"))  # fmt: skip
        return self.rng.choice(sorted(candidates)) if candidates else None

    def _pause(self, fault: Fault) -> None:
        soak_id, worker = self.deployment.soak_id, fault.target
        pids = signal_marked(soak_id, signal.SIGSTOP, role=worker)
        event = self._event("pause", worker, processes=len(pids), seconds=PAUSE_SECONDS)
        self.resume.append((time.monotonic() + PAUSE_SECONDS,
                            lambda: signal_marked(soak_id, signal.SIGCONT, role=worker), event))  # fmt: skip

    def _restart_redis(self, fault: Fault) -> None:
        from xcomsim.soak import services

        deployment = self.deployment
        deployment.redis.process.stop(grace=5)
        deployment.supervisor.started.remove(deployment.redis.process)
        event = self._event("restart", "redis-server", seconds=DOWN_SECONDS)

        def start() -> None:
            deployment.redis = services.start_redis(deployment.supervisor, deployment.data, deployment.redis.port)

        self.resume.append((time.monotonic() + DOWN_SECONDS, start, event))

    def _restart_s3(self, fault: Fault) -> None:
        from xcomsim.soak import services

        s3 = self.deployment.s3
        s3.proxy.stop(grace=0)
        self.deployment.supervisor.started.remove(s3.proxy)
        event = self._event("restart", "S3 endpoint", seconds=DOWN_SECONDS)

        def start() -> None:
            s3.proxy = services.start_proxy(self.deployment.supervisor, s3.port, s3.moto_port)

        self.resume.append((time.monotonic() + DOWN_SECONDS, start, event))

    def _drop_db(self, fault: Fault) -> None:
        import psycopg

        pg = self.deployment.postgres
        with psycopg.connect(host="127.0.0.1", port=pg.port, user=pg.user, password=pg.password, dbname="postgres",
                             autocommit=True, connect_timeout=5) as conn:  # fmt: skip
            dropped = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = %s AND pid <> pg_backend_pid()", (pg.database,)).fetchone()[0]  # fmt: skip
        self._event("drop-connections", "PostgreSQL", connections=dropped)["ended"] = time.time()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _last_event(lines: list[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None
