"""Throughput of N workers, each its own task instance, pushing and pulling 1 KiB at once."""

from __future__ import annotations

import pytest
from xcomsim.bench.concurrency import ConcurrentLoad
from xcomsim.bench.latency import KiB, probes

PAIRS = 10  # push-then-pull pairs per worker per batch
BATCHES = 3


@pytest.mark.parametrize("workers", [1, 4])
def test_throughput(benchmark, record, bench_env, setup, workers):
    with probes(bench_env, workers) as workers_probes:
        load = ConcurrentLoad(workers_probes, KiB, PAIRS)
        benchmark.group = f"throughput, {workers} worker{'s' if workers > 1 else ''}"
        batch = benchmark.pedantic(load.run, rounds=BATCHES, warmup_rounds=1)
    median = benchmark.stats.stats.median if benchmark.stats is not None else batch.seconds
    record(setup, workers=workers, operations_per_batch=batch.operations, ops_per_s=round(batch.operations / median, 2))
