"""What the soak's DAGs do in their tasks: push, pull, claim, overstep their scope, each recorded.

The generated DAG files only lay out tasks; the work is here, in the library, so
every DAG of every seed runs the same code. A value is a function of its
coordinate (and, for ``attempt``, of the try), so the checker knows what each
try pushed without the history carrying values.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from xcomsim.soak import probe

IDENTICAL_KEYS = ("small", "large")  # the same value on every try
PER_TRY_KEY = "attempt"  # a value of its own on every try: retries race on it
PUSH_KEYS = (*IDENTICAL_KEYS, PER_TRY_KEY)
REPUSH_KEY = "small"  # pushed a second time in each try, with another value
FORBIDDEN_PUSH = "forbidden"
FORBIDDEN_PULL = ("pushers", "large")  # (source task, key) the violating task may not pull


def value_for(run_id: str, map_index: int, key: str, try_number: int, sizes: dict[str, int],
              again: bool = False) -> dict[str, Any]:  # fmt: skip
    """The value pushed at a coordinate by a try: its JSON form is ``sizes[key]`` bytes or a few more.

    ``again``: the value of a try's second push of the key, which push-once must refuse."""
    value = {"run": run_id, "map": map_index, "key": key, "try": try_number if key == PER_TRY_KEY else 0}
    if again:
        value["again"] = True
    return {**value, "pad": "x" * max(0, sizes[key] - 80)}


def chosen(plan: dict[str, Any], what: str, run_id: str, index: int) -> float:
    """A number in [0, 1) fixed by the seed, the choice and the coordinate: the seed reproduces every choice."""
    text = f"{plan['seed']}/{what}/{run_id}/{index}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") / 2**64


def push(context: dict[str, Any], plan: dict[str, Any], index: int) -> None:
    me = probe.task(context)
    ti = context["ti"]
    first_try = me["try_number"] == 1
    if first_try and plan["kill_before_row"] and chosen(plan, "kill-before-row", ti.run_id, index) < plan["kill_rate"]:
        key = PUSH_KEYS[int(chosen(plan, "kill-key", ti.run_id, index) * len(PUSH_KEYS))]
        probe.kill_before_row({probe.coordinate(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, key)})
    for key in PUSH_KEYS:
        value = value_for(ti.run_id, ti.map_index, key, me["try_number"], plan["sizes"])
        with probe.operation("push", key=key, digest=probe.digest(value), size=len(json.dumps(value))):
            with probe.push_profiled():
                ti.xcom_push(key=key, value=value)
        time.sleep(plan["pause"])
    if plan.get("repush"):  # push-once within a try: a second push of a key, with another value, must be refused
        value = value_for(ti.run_id, ti.map_index, REPUSH_KEY, me["try_number"], plan["sizes"], again=True)
        try:
            with probe.operation("push", key=REPUSH_KEY, digest=probe.digest(value), size=len(json.dumps(value)),
                                 again=True):  # fmt: skip
                ti.xcom_push(key=REPUSH_KEY, value=value)
        except Exception:  # noqa: BLE001 - recorded; the refusal is what is expected
            pass
    probe.record("task", phase="pushed", cpu=time.process_time())  # this process's CPU since its fork
    probe.task_profiled()
    if first_try and chosen(plan, "flaky", ti.run_id, index) < plan["flaky_rate"]:
        probe.record("task", phase="fail-on-purpose")
        raise RuntimeError("failing on purpose after its pushes, so that the next try pushes again")


def collect(context: dict[str, Any], plan: dict[str, Any]) -> None:
    """Pull everything every pusher pushed (a pusher that failed for good has nothing to give)."""
    probe.task(context)
    ti = context["ti"]
    for index in range(plan["mappers"]):
        for key in PUSH_KEYS:
            with probe.operation("pull", source="pushers", source_map=index, key=key) as out:
                value = ti.xcom_pull(task_ids="pushers", key=key, map_indexes=index)
                out["digest"] = None if value is None else probe.digest(value)
                out["value_try"] = value.get("try") if isinstance(value, dict) else None


def violate(context: dict[str, Any], plan: dict[str, Any]) -> None:
    """Push a key the policy does not grant and pull a key it does not allow: both must be refused."""
    probe.task(context)
    ti = context["ti"]
    try:
        with probe.operation("scope", kind="push", source=ti.task_id, key=FORBIDDEN_PUSH):
            ti.xcom_push(key=FORBIDDEN_PUSH, value={"not": "allowed"})
    except Exception:  # noqa: BLE001 - recorded; the refusal is what is expected
        pass
    source, key = FORBIDDEN_PULL
    for map_indexes in (0, None):  # one index, and every index at once (a different read path in Airflow)
        try:
            with probe.operation("scope", kind="pull", source=source, key=key):
                got = ti.xcom_pull(task_ids=source, key=key, **({} if map_indexes is None else {"map_indexes": map_indexes}))
                if got is not None and not isinstance(got, (str, bytes, dict)):
                    list(got)  # a lazy sequence reads its values only when iterated
        except Exception:  # noqa: BLE001
            pass


def claim(context: dict[str, Any], plan: dict[str, Any], index: int) -> None:
    """Race the other claimers of this run for each item; hold what is won, release it or let its lease run out."""
    me = probe.task(context)
    ti = context["ti"]
    store = _claim_store()
    if store is None:
        probe.record("claim", phase="not-claimed")
        return
    worker_id = f"{ti.map_index}.{me['try_number']}.{me['ti_id'][:8]}"
    time.sleep(until_next(plan.get("claim_barrier", 0), time.time()))
    began = time.time()
    for round_ in range(plan["claim_rounds"]):
        if round_:  # later rounds after the first round's leases ran out: what was left to its lease is free again
            time.sleep(max(0.0, began + plan["lease"] * round_ + 0.5 - time.time()))
        for item in range(plan["items"]):
            claim_id = f"{ti.dag_id}:{ti.run_id}:item{item}"  # run ids repeat across a model check's phases
            with probe.operation("claim", claim_id=claim_id, holder=worker_id, lease=plan["lease"]) as out:
                won = store.try_claim(claim_id, worker_id, lease_seconds=plan["lease"])
                out["won"] = won is not None
            if won is None:
                continue
            time.sleep(plan["hold"])
            if (index + round_ + item) % 3:  # every third win is left to its lease
                with probe.operation("release", claim_id=claim_id, holder=worker_id) as out:
                    out["released"] = bool(store.release(claim_id, worker_id))
        time.sleep(plan["pause"])


def until_next(period: float, now: float) -> float:
    """Seconds to the next multiple of ``period`` on the wall clock: claimers of a run started a second or two
    apart all claim at that instant, so they race (a worker's skew is whole minutes: the instants still agree)."""
    return 0.0 if period <= 0 else period - now % period


def _claim_store() -> Any:
    from airflow.sdk.execution_time.xcom import XCom

    from xcomsim.conformance.capabilities import declared

    factory = declared(XCom).claim_store
    return None if factory is None else factory()
