"""Examples per second of the race scheduler, measured in one run.

Run: ``python -m xcomsim.bench.race_speed [--examples N]``. Each example is a
Hypothesis-drawn interleaving of a small workload on the reference stores and
backend; the figure includes the new DAG run per example.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcomsim.env import Simulation


def _rate(run_one: Callable[[Any, Any], None], examples: int) -> float:
    count = {"n": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data())
    def body(data: Any) -> None:
        count["n"] += 1
        run_one(data, count)

    started = time.perf_counter()
    body()
    return count["n"] / (time.perf_counter() - started)


def measure(examples: int = 100, sim: Simulation | None = None) -> dict[str, float]:
    if sim is None:
        with Simulation.start() as own:
            return measure(examples, own)
    from xcomsim.backend import XComPolicy
    from xcomsim.backend.claims import RedisClaimStore, SqlClaimStore
    from xcomsim.scheduler import Scheduler, hypothesis_chooser
    from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, run_workload, workload_dag
    from xcomsim.strategies import Claim, Push

    results = {}
    with sim.environment() as env:
        dag = workload_dag("xcomsim_bench_race")
        XComPolicy(pushes={WORKLOAD_TASK_ID: ["k"]}).attach(dag)
        stores = {"sql": SqlClaimStore(env.engine), "redis": RedisClaimStore(env.redis)}
        for name, store in stores.items():

            def bare(data: Any, _: Any, store: Any = store) -> None:
                if hasattr(store, "clear"):
                    store.clear()
                env.redis.flushall()
                Scheduler(hypothesis_chooser(data)).run(
                    {f"w{i}": (lambda i=i: store.try_claim("c", f"w{i}")) for i in range(3)}
                )

            results[f"claim race, 3 workers, {name} store (scheduler only)"] = _rate(bare, examples)

            def as_tasks(data: Any, _: Any, store: Any = store) -> None:
                env.redis.flushall()
                run_workload([[Claim("c")]] * 3, dag=dag, claim_store=store, chooser=hypothesis_chooser(data))

            results[f"claim race, 3 task workers, {name} store"] = _rate(as_tasks, examples)
        run_workload([[Push("k", 0)]], dag=dag)  # warm clients
        results["push race, 2 task workers, ExclusiveXCom on S3"] = _rate(
            lambda data, _: run_workload([[Push("k", 1)], [Push("k", 2)]], dag=dag, chooser=hypothesis_chooser(data)),
            examples,
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args(argv)
    for name, rate in measure(args.examples).items():
        print(f"{name:<58}{rate:>8.1f} examples/s")


if __name__ == "__main__":
    main()
