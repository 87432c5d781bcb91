"""The standard set ``xcomsim bench`` runs: one row per backend, measured in one process.

Per backend: the bytes the ``xcom`` table grows by per 100 runs of a DAG that
passes about 4 MB between two tasks, push and pull latency of one payload size
(p50, p99), and the throughput of several workers pushing and pulling at once;
then uncontended claim latency on the SQL and Redis claim stores. The report
names the services it ran against, and says so plainly when they were fakes.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xcomsim.bench.concurrency import ConcurrentLoad
from xcomsim.bench.footprint import offload_pipeline_dag, per_runs
from xcomsim.bench.latency import (
    KiB,
    MiB,
    BackendSetup,
    claim_stores,
    fresh_claim_ids,
    payload,
    probe_dag,
    probes,
    standard_setups,
)
from xcomsim.bench.services import Service, caveat, probe
from xcomsim.bench.stats import Summary, time_calls


@dataclass(frozen=True)
class StandardConfig:
    size: int = MiB  # payload of the push/pull columns
    rounds: int = 30  # timed pulls per backend (pushes: half as many, at least 3)
    runs: int = 2  # DAG runs per backend for the footprint column
    workers: int = 4
    pairs: int = 10  # push-then-pull pairs per worker in the throughput batch
    claim_rounds: int = 100
    backend: str | None = None  # a further backend to measure, by dotted path
    # Airflow config ("section.option", value) for every row; a standard row's own settings win.
    backend_config: tuple[tuple[str, str], ...] = ()

    @classmethod
    def quick(cls, **changes: Any) -> StandardConfig:
        """Few rounds: proves the command works, the numbers mean little."""
        return cls(rounds=4, runs=1, workers=2, pairs=2, claim_rounds=5).replace(**changes)

    def replace(self, **changes: Any) -> StandardConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def push_rounds(self) -> int:
        return max(3, self.rounds // 2)


@dataclass(frozen=True)
class Row:
    """One backend's figures, or (``error``) the one line saying why it could not be measured."""

    setup: BackendSetup
    values_in: str
    table_bytes_per_100_runs: float = 0.0
    push: Summary | None = None
    pull: Summary | None = None
    ops_per_second: float = 0.0
    error: str | None = None


@dataclass
class Report:
    config: StandardConfig
    services: list[Service]
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    claims: dict[str, Summary] = field(default_factory=dict)
    seconds: float = 0.0
    footprint_dag: str = ""

    @property
    def caveat(self) -> str | None:
        return caveat(self.services)

    def as_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "config": dataclasses.asdict(self.config),
            "services": [dataclasses.asdict(s) for s in self.services],
            "fakes": [s.role for s in self.services if s.fake],
            "caveat": self.caveat,
            "footprint_dag": self.footprint_dag,
            "backends": [
                {"name": row.setup.name, "label": row.setup.label, "backend": row.setup.backend,
                 "store": row.setup.store, "error": row.error}
                if row.error is not None
                else {
                    "name": row.setup.name,
                    "label": row.setup.label,
                    "backend": row.setup.backend,
                    "store": row.setup.store,
                    "values_in": row.values_in,
                    "xcom_table_bytes_per_100_runs": round(row.table_bytes_per_100_runs),
                    "payload_bytes": self.config.size,
                    "push": row.push.as_ms(),  # type: ignore[union-attr]
                    "pull": row.pull.as_ms(),  # type: ignore[union-attr]
                    "workers": self.config.workers,
                    "ops_per_s": round(row.ops_per_second, 2),
                }
                for row in self.rows
            ],
            "claims": {store: summary.as_ms() for store, summary in self.claims.items()},
            "seconds": round(self.seconds, 2),
        }


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU count and model, Python, Airflow, SQLite."""
    import sqlite3

    import airflow

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "airflow": airflow.__version__,
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _values_in(setup: BackendSetup, services: list[Service]) -> str:
    by_role = {s.role: s for s in services}
    role, cell = {"db": ("metadata DB", "xcom row"), "s3": ("S3", "S3"), "redis": ("Redis", "Redis")}.get(
        setup.store, (None, "(its own)")
    )
    service = by_role.get(role) if role else None
    return f"{cell} ({service.short})" if service is not None else cell


def observed_values_in(before: dict[str, int], after: dict[str, int], size: int, services: list[Service]) -> str:
    """Where a backend's pushes of ``size``-byte values landed: the stores whose objects grew by about that much.

    Object names as ``xcomsim.conformance.stores`` lists them (``s3://bucket/key``, ``redis:key``,
    ``redis/N:key``, ``file:///path``); none grew: the value stayed in the xcom row.
    """
    grown: dict[str, set[str]] = {}
    for name, length in after.items():
        if length - before.get(name, 0) >= size // 2:
            kind = "s3" if name.startswith("s3://") else "redis" if name.startswith("redis") else "file"
            where = name.split("/", 3)[2] if kind == "s3" else name.rsplit("/", 1)[0] if kind == "file" else ""
            grown.setdefault(kind, set()).add(where)
    by_role = {s.role: s for s in services}
    cells = []
    for kind, role, label in (("s3", "S3", "S3"), ("redis", "Redis", "Redis"), ("file", None, "files")):
        if kind in grown:
            service = by_role.get(role) if role else None
            places = ", ".join(sorted(p for p in grown[kind] if p))
            cells.append(f"{label} ({service.short if service else places})" if service or places else label)
    if cells:
        return " + ".join(cells)
    db = by_role.get("metadata DB")
    return f"xcom row ({db.short})" if db is not None else "xcom row"


def steps(config: StandardConfig) -> int:
    """How many times ``run`` calls ``progress``: for a progress bar's total."""
    return 2 + 3 * len(standard_setups(config.backend))


def run(sim: Any, config: StandardConfig, progress: Callable[[str], None] = lambda step: None) -> Report:
    """Measure the standard set in ``sim``; ``progress(description)`` is called after each step."""
    from xcomsim.env.xcom_backend import load_backend

    started = time.perf_counter()
    setups = standard_setups(config.backend)
    for setup in setups:
        load_backend(setup.backend)  # a bad --backend fails now, not after the others were measured
    dag = offload_pipeline_dag()
    probe_dags = {1: probe_dag(), config.workers: probe_dag(f"xcomsim_bench_{config.workers}_workers", config.workers)}
    with sim.environment() as env:
        report = Report(config, probe(env), machine(), footprint_dag=dag.dag_id)
    progress("services probed")
    value = payload(config.size)
    for setup in setups:
        values_in = _values_in(setup, report.services)
        try:
            report.rows.append(_measure(sim, config, setup, values_in, value, dag, probe_dags, progress,
                                        report.services))  # fmt: skip
        except Exception as exc:  # one backend's failure is its row's, the others are still measured
            report.rows.append(Row(setup, values_in, error=one_line(exc)))
            progress(f"{setup.name}: failed")
    with sim.environment() as env:
        for name, store in claim_stores(env).items():
            ids = fresh_claim_ids(name)
            report.claims[name] = Summary.of(time_calls(store.try_claim, config.claim_rounds, setup=lambda: next(ids)))
    progress("claims")
    report.seconds = time.perf_counter() - started
    return report


def _measure(sim: Any, config: StandardConfig, setup: BackendSetup, values_in: str, value: str, dag: Any,
             probe_dags: dict[int, Any], progress: Callable[[str], None], services: list[Service]) -> Row:  # fmt: skip
    from xcomsim.conformance.stores import store_sizes, watch

    settings = {**dict(config.backend_config), **dict(setup.config)}
    with sim.environment(backend=setup.backend, config=settings) as env:
        watch()
        own = setup.store not in ("db", "s3", "redis")  # a backend of the user's: where its pushes really went
        before = store_sizes(env) if own else {}
        with probes(env, dag=probe_dags[1]) as (one,):
            push = Summary.of(time_calls(one.push, config.push_rounds, setup=lambda: (one.new_key(), value)))
            key = one.pushed(value)
            pull = Summary.of(time_calls(one.pull, config.rounds, setup=lambda: (key,)))
        if own:
            values_in = observed_values_in(before, store_sizes(env), len(value), services)
        progress(f"{setup.name}: push/pull latency")
        footprint = per_runs(env, dag, config.runs)
        progress(f"{setup.name}: xcom table per DAG run")
        with probes(env, config.workers, dag=probe_dags[config.workers]) as workers:
            load = ConcurrentLoad(workers, KiB, config.pairs)
            load.run()  # warm
            batch = load.run()
        progress(f"{setup.name}: {config.workers} workers")
    return Row(setup, values_in, footprint.bytes_per_100_runs, push, pull, batch.ops_per_second)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for a table cell or a log line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def human_bytes(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def size_name(count: int) -> str:
    for unit, scale in (("MiB", MiB), ("KiB", KiB)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} B"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(report: Report) -> Any:
    """The report as one ``rich`` table, its caption saying what each column measured."""
    from rich.table import Table
    from rich.text import Text

    c = report.config
    extrapolated = "" if c.runs == 100 else f", from {c.runs} run{'s' if c.runs > 1 else ''}"
    result = Table(
        title=f"xcomsim bench: {size_name(c.size)} payload",
        caption=(
            f"xcom table: growth per 100 runs of {report.footprint_dag} (~4 MB between two tasks{extrapolated}). "
            f"push/pull: one task instance, {c.push_rounds} pushes / {c.rounds} pulls. "
            f"throughput: {c.workers} workers, each a task instance, pushing and pulling 1 KiB at once."
        ),
        caption_justify="left",
    )
    for name, justify in (("backend", "left"), ("values in", "left"), ("xcom table / 100 runs", "right"),
                          ("push p50", "right"), ("pull p50", "right"), ("pull p99", "right"),
                          (f"ops/s ({c.workers} workers)", "right")):  # fmt: skip
        result.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in report.rows:
        if row.error is not None or row.push is None or row.pull is None:
            cell = row.error or "not measured"
            cell = cell if len(cell) <= _CELL else cell[: _CELL - 1] + "…"
            result.add_row(row.setup.label, Text(f"failed: {cell}", style="red"), "-", "-", "-", "-", "-")
            continue
        result.add_row(row.setup.label, row.values_in, human_bytes(row.table_bytes_per_100_runs), _ms(row.push.p50),
                       _ms(row.pull.p50), _ms(row.pull.p99), f"{row.ops_per_second:.0f}")  # fmt: skip
    return result


_CELL = 40  # characters of a failure shown in its row; the whole line is printed under the table


def notes(report: Report) -> list[str]:
    """Lines printed under the table: claims, services, the fakes caveat, the machine."""
    m = report.machine
    claims = ", ".join(f"{name} {_ms(s.p50)} (p99 {_ms(s.p99)})" for name, s in report.claims.items())
    lines = [f"{row.setup.label} failed: {row.error}" for row in report.rows if row.error is not None]
    lines += [
        f"claims (uncontended try_claim, p50): {claims}",
        "services: " + "; ".join(f"{s.role}: {s.what}" for s in report.services),
        f"machine: {m['nproc']} x {m['cpu']}, Python {m['python']}, Airflow {m['airflow']}, SQLite {m['sqlite']}",
        f"measured in {report.seconds:.1f} s",
    ]
    if report.caveat:
        lines.append(report.caveat)
    return lines
