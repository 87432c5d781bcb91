"""Examples per second of the race scheduler, measured in one run.

Run: ``python -m xcomsim.bench.race_speed [--examples N] [--repeat R]``. Each example
is a Hypothesis-drawn interleaving of a small workload on the reference stores and
backend. A rate is the median of ``R`` properties of ``N`` examples each: one property of a
fast race lasts about 0.1 s, so a single one moves 20-30% with a full garbage collection or
a neighbour's wake-up. Three kinds of race, each in the shape something in xcomsim runs it:

- *scheduler only*: plain functions racing for a claim (no task instance);
- *task workers, one task instance*: workers acting as one running task instance, each
  example racing for a new claim id or XCom key, as the conformance kit's properties do;
- *task workers, a new DAG run per example*: ``run_workload(..., dag=dag)`` without a
  handle, which starts a DAG run and a task instance for every example;
- *a zombie and its retry*: the ``fenced-tries`` race, with no time fault, with the
  zombie's clock skewed (the world's clock runs, every wall-clock read goes through
  time-machine), and with a slow call: what the time faults cost a race.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xcomsim.env import Simulation


def _rate(run_one: Callable[[Any], None], examples: int, warm_up: int = 5, repeat: int = 5) -> float:
    """Examples per second of ``run_one``: the median of ``repeat`` properties of ``examples`` each,
    after a few unmeasured examples (first statements, clients, threads)."""
    count = {"n": 0}

    def body(data: Any) -> None:
        count["n"] += 1
        run_one(data)

    def run(n: int) -> None:
        settings(max_examples=n, deadline=None, database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))(given(data=st.data())(body))()  # fmt: skip

    run(warm_up)
    rates = []
    for _ in range(max(1, repeat)):
        count["n"] = 0
        started = time.perf_counter()
        run(examples)
        rates.append(count["n"] / (time.perf_counter() - started))
    return statistics.median(rates)


def measure(examples: int = 100, sim: Simulation | None = None, repeat: int = 5) -> dict[str, float]:
    if sim is None:
        with Simulation.start() as own:
            return measure(examples, own, repeat)
    from xcomsim.backend.claims import RedisClaimStore, SqlClaimStore
    from xcomsim.scheduler import Scheduler, hypothesis_chooser
    from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, run_workload, workload_dag
    from xcomsim.strategies import Claim, Push
    from xcomsim.task_context import start_task_instances, thread_local_task_state

    results = {}
    rate = functools.partial(_rate, examples=examples, repeat=repeat)
    fresh = itertools.count()
    with sim.environment() as env, thread_local_task_state():
        dag = workload_dag("xcomsim_bench_race")
        (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
        stores = {"SQL": SqlClaimStore(env.engine), "Redis": RedisClaimStore(env.redis)}
        for name, store in stores.items():

            def bare(data: Any, store: Any = store) -> None:
                claim = f"c{next(fresh)}"
                Scheduler(hypothesis_chooser(data)).run(
                    {f"w{i}": (lambda i=i: store.try_claim(claim, f"w{i}")) for i in range(3)}
                )

            results[f"claim race, 3 workers, {name} store, scheduler only"] = rate(bare)

            def as_task(data: Any, store: Any = store) -> None:
                claim = f"c{next(fresh)}"
                run_workload([[Claim(claim)]] * 3, dag=dag, claim_store=store, handle=handle,
                             chooser=hypothesis_chooser(data))  # fmt: skip

            results[f"claim race, 3 task workers, {name} store, one task instance"] = rate(as_task)

        def new_run(data: Any) -> None:
            run_workload([[Claim(f"c{next(fresh)}")]] * 3, dag=dag, claim_store=stores["SQL"],
                         chooser=hypothesis_chooser(data))  # fmt: skip

        results["claim race, 3 task workers, SQL store, a new DAG run each"] = rate(new_run)
        run_workload([[Push("warm", 0)]], dag=dag, handle=handle)  # the S3 client and guard path, warmed

        def push(data: Any) -> None:
            key = f"k{next(fresh)}"
            run_workload([[Push(key, 1)], [Push(key, 2)]], dag=dag, handle=handle, chooser=hypothesis_chooser(data))

        results["push race, 2 task workers, ExclusiveXCom on S3, one task instance"] = rate(push)
        from xcomsim.scheduler.faults import FaultPlan
        from xcomsim.strategies import Takeover

        plans = {"no time fault": lambda: None, "zombie's clock 10 min behind": lambda: FaultPlan({}, skews={"w0": -600.0}),
                 "a slow call": lambda: FaultPlan({1: "slow-io"}, workers=frozenset({"w0"}))}  # fmt: skip
        for label, plan in plans.items():

            def zombie(data: Any, plan: Any = plan) -> None:
                (run,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])  # each example's own tries
                key = f"k{next(fresh)}"
                run_workload([[Push(key, 1)], [Takeover(), Push(key, 2)]], dag=dag, handle=run, faults=plan(),
                             chooser=hypothesis_chooser(data))  # fmt: skip

            results[f"zombie and retry, ExclusiveXCom on S3, {label}"] = rate(zombie)
        results["push race, 2 task workers, ExclusiveXCom on S3, a new DAG run each"] = rate(
            lambda data: run_workload([[Push("k", 1)], [Push("k", 2)]], dag=dag, chooser=hypothesis_chooser(data))
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100, help="examples per property")
    parser.add_argument("--repeat", type=int, default=5, help="properties per race (the median is reported)")
    parser.add_argument("--only", default="", help="only the races whose name contains this text")
    args = parser.parse_args(argv)
    for name, rate in measure(args.examples, repeat=args.repeat).items():
        if args.only not in name:
            continue
        print(f"{name:<72}{rate:>8.1f} examples/s")


if __name__ == "__main__":
    main()
