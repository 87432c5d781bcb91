"""Push, pull and claim latency per backend and payload size, as a running task sees it."""

from __future__ import annotations

import pytest

from xcomsim.bench.footprint import xcom_table_bytes
from xcomsim.bench.latency import claim_stores, fresh_claim_ids, payload
from xcomsim.bench.services import probe_redis

WARMUP = 1


def test_push(benchmark, record, bench_env, probe, setup, size_name, size, rounds):
    value = payload(size)
    benchmark.group = f"push {size_name}"
    before = xcom_table_bytes(bench_env.engine)
    benchmark.pedantic(probe.push, setup=lambda: ((probe.new_key(), value), {}), rounds=rounds, warmup_rounds=WARMUP)
    growth = xcom_table_bytes(bench_env.engine) - before
    record(setup, payload_bytes=size, xcom_table_bytes_per_push=round(growth / (rounds + WARMUP)))


def test_pull(benchmark, record, bench_env, probe, setup, size_name, size, rounds):
    if setup.store == "redis" and size_name == "16MiB" and probe_redis(bench_env.redis).fake:
        pytest.skip("fakeredis's TCP server cannot send a 16 MiB reply (BlockingIOError); use --xcomsim-redis")
    value = payload(size)
    key = probe.pushed(value)
    benchmark.group = f"pull {size_name}"
    pulled = benchmark.pedantic(probe.pull, args=(key,), rounds=rounds, warmup_rounds=WARMUP)
    assert pulled == value
    record(setup, payload_bytes=size)


@pytest.mark.parametrize("store", ["sql", "redis"])
def test_claim(benchmark, record, xcomsim_env, store):
    claims = claim_stores(xcomsim_env)[store]
    ids = fresh_claim_ids()
    benchmark.group = "claim (uncontended try_claim)"
    won = benchmark.pedantic(claims.try_claim, setup=lambda: (next(ids), {}), rounds=100, warmup_rounds=WARMUP)
    assert won is not None
    record(store=store, claim_store=type(claims).__name__)
