"""What scenario DAG runs add to the metadata DB's xcom table, inline vs offloaded (and their run time)."""

from __future__ import annotations

import pytest
from xcomsim.bench.footprint import xcom_table_bytes

SCENARIOS = ["s3_offload_pipeline", "fraud_detection"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_dag_runs(benchmark, record, xcomsim_simulation, bench_env, setup, scenario, runs):
    try:
        dag = xcomsim_simulation.dags.get(scenario)
    except Exception as exc:  # noqa: BLE001 - another --xcomsim-dags folder
        pytest.skip(f"scenario {scenario} not in the dags folder: {exc}")

    def run() -> None:
        result = bench_env.run_dag(dag)
        assert result.succeeded, result.describe()

    before = xcom_table_bytes(bench_env.engine)
    benchmark.group = f"dag run {scenario}"
    benchmark.pedantic(run, rounds=runs, warmup_rounds=0)
    growth = xcom_table_bytes(bench_env.engine) - before
    record(setup, scenario=scenario, runs=runs, xcom_rows=len(bench_env.xcom_rows()),
           xcom_table_bytes_per_run=round(growth / runs), xcom_table_bytes_per_100_runs=round(growth / runs * 100))
