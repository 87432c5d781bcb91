"""Claims: exactly one winner per race, lease expiry frees a crashed claimant's claim, only the holder releases."""

from __future__ import annotations

import threading
import time

import pytest

from xcomsim.backend.claims import RedisClaimStore, SqlClaimStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sql", "redis"])
def store_and_clock(request, xcomsim_env):
    clock = Clock()
    if request.param == "sql":
        return SqlClaimStore(xcomsim_env.engine, clock=clock), clock
    return RedisClaimStore(xcomsim_env.redis, clock=clock), clock


def test_racing_workers_exactly_one_wins(store_and_clock):
    store, _ = store_and_clock
    barrier = threading.Barrier(10)
    winners: list[str] = []

    def worker(n: int) -> None:
        barrier.wait()
        if store.try_claim("resource", f"w{n}") is not None:
            winners.append(f"w{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.holder("resource") == winners[0]


def test_only_the_holder_releases_and_a_released_claim_is_free_again(store_and_clock):
    store, _ = store_and_clock
    assert store.try_claim("c", "alice") is not None
    assert store.try_claim("c", "bob") is None
    assert store.release("c", "bob") is False
    assert store.holder("c") == "alice"
    assert store.release("c", "alice") is True
    assert store.holder("c") is None
    claim = store.try_claim("c", "bob")
    assert claim is not None and claim.worker_id == "bob"


def _crashed_claim_is_free_after_its_lease(store, clock) -> None:
    claim = store.try_claim("c", "crashed", lease_seconds=30)
    assert claim is not None
    clock.now += 29
    assert store.try_claim("c", "next") is None
    clock.now += 2
    assert store.holder("c") is None, "no-lost-claim: the lease ran out but the claim is still held"
    assert store.try_claim("c", "next").worker_id == "next"
    assert store.release("c", "crashed") is False


def test_sql_lease_expiry_frees_a_crashed_claimants_claim(xcomsim_env):
    clock = Clock()
    store = SqlClaimStore(xcomsim_env.engine, clock=clock)
    assert store.try_claim("probe", "w", lease_seconds=30).lease_expires_at == clock.now + 30
    _crashed_claim_is_free_after_its_lease(store, clock)


def test_claim_store_without_lease_expiry_is_caught(xcomsim_env):
    from xcomsim.mutants.claims import NoLeaseClaimStore

    clock = Clock()
    with pytest.raises(AssertionError, match="no-lost-claim"):
        _crashed_claim_is_free_after_its_lease(NoLeaseClaimStore(xcomsim_env.engine, clock=clock), clock)


def test_redis_lease_expiry_is_the_servers_key_expiry(xcomsim_env):
    store = RedisClaimStore(xcomsim_env.redis)
    assert store.try_claim("c", "crashed", lease_seconds=0.05) is not None
    assert store.try_claim("c", "next") is None
    deadline = time.monotonic() + 5
    while store.holder("c") is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.try_claim("c", "next") is not None


def test_bad_ids_are_refused(store_and_clock):
    store, _ = store_and_clock
    from xcomsim.backend import ExclusiveXComError

    with pytest.raises(ExclusiveXComError, match="claim_id must be a 1-250 char string"):
        store.try_claim("", "w")


@pytest.mark.parametrize("lease", [0, -1, 0.0, float("nan"), float("inf"), 1e20, True, "60"])
def test_bad_leases_are_refused_by_name(store_and_clock, lease):
    from xcomsim.backend import XComValueError

    store, _ = store_and_clock
    with pytest.raises(XComValueError, match="lease"):
        store.try_claim("resource", "w1", lease_seconds=lease)
    assert store.holder("resource") is None


def test_at_the_exact_expiry_instant_holder_and_try_claim_agree(xcomsim_env):
    clock = Clock()
    store = SqlClaimStore(xcomsim_env.engine, clock=clock)
    assert store.try_claim("resource", "w1", lease_seconds=10) is not None
    clock.now += 10  # exactly the expiry instant
    assert store.holder("resource") is None
    assert store.try_claim("resource", "w2", lease_seconds=10) is not None
    assert store.holder("resource") == "w2"


def _claim_with_lease_zero(ti, dag_run, **_):
    from airflow.sdk._shared.module_loading import import_string

    store = import_string(dag_run.conf["store"])()
    try:
        return store.try_claim("shared-resource", ti.task_id, lease_seconds=0) is not None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _lease_zero_dag():
    from datetime import datetime

    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG("claim_lease_zero", start_date=datetime(2024, 1, 1), schedule=None) as dag:
        PythonOperator(task_id="first", python_callable=_claim_with_lease_zero)
        PythonOperator(task_id="second", python_callable=_claim_with_lease_zero)
    return dag


@pytest.mark.parametrize("store", ["xcomsim.mutants.hardening.unchecked_lease_store",
                                   "xcomsim.backend.claims.open_claim_store"])  # fmt: skip
def test_a_lease_of_zero_never_gives_two_winners(run_dag, store):
    from xcomsim.mutants.hardening import HARDENING

    assert HARDENING["xcomsim.mutants.hardening.UncheckedLeaseClaimsXCom"] == "exactly-one-claim-winner"
    result = run_dag(_lease_zero_dag(), conf={"store": store})

    outcomes = [result.xcom("first"), result.xcom("second")]
    if "mutants" in store:
        assert outcomes == [True, True]  # two winners of one resource
    else:
        assert all(str(o).startswith("XComValueError: lease_seconds=0") for o in outcomes), outcomes
