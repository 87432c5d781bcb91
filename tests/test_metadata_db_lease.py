"""The SQLite tier's leased pool: one holder at a time, and a holder is an API request, not a thread.

Seen in CI under load: two workers pushing through the in-process Execution API at
once failed with "Database error" (a shared-cache table lock). FastAPI commits a
request's session in its dependency's teardown, after the route returned, and the
route's pool thread may serve the next request in between; a lease keyed by
thread let that next request borrow a second connection beside the uncommitted one.
"""

from __future__ import annotations

import contextvars
import threading
import time

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from xcomsim.bench.concurrency import ConcurrentLoad
from xcomsim.bench.latency import probe_dag, probes
from xcomsim.env.metadata_db import REQUEST, _Lease


def _as_request(lease: _Lease, token: object) -> None:
    contextvars.copy_context().run(lambda: (REQUEST.set(token), lease.acquire()))


def test_one_thread_serving_two_requests_is_two_holders():
    lease = _Lease(timeout=0.2)
    first, second = object(), object()
    _as_request(lease, first)
    _as_request(lease, first)  # the same request borrows again
    with pytest.raises(PoolTimeoutError, match="another holder"):
        _as_request(lease, second)
    lease.release()
    lease.release()
    _as_request(lease, second)  # free once the first request handed everything back


def test_a_request_may_end_its_lease_from_another_thread():
    lease = _Lease(timeout=0.2)
    _as_request(lease, object())
    done = threading.Thread(target=lease.release)
    done.start()
    done.join()
    lease.acquire()  # this thread, outside any request, gets it


def test_outside_requests_a_thread_is_the_holder():
    lease = _Lease(timeout=0.2)
    lease.acquire()
    lease.acquire()
    taken: list[BaseException] = []
    other = threading.Thread(target=lambda: _catch(lease.acquire, taken))
    other.start()
    other.join()
    assert isinstance(taken[0], PoolTimeoutError)


def _catch(call, into: list[BaseException]) -> None:
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        into.append(exc)


@pytest.fixture
def slow_commits():
    """Airflow's own session dependency, pausing before its teardown commits: the window in
    which the route's pool thread is free to serve another request."""
    from airflow.api_fastapi.common.db.common import _get_session
    from airflow.sdk.execution_time.supervisor import in_process_api_server
    from airflow.utils.session import create_session

    def paused_session():
        with create_session(scoped=False) as session:
            yield session
            time.sleep(0.02)

    overrides = in_process_api_server().app.dependency_overrides
    overrides[_get_session] = paused_session
    yield
    overrides.pop(_get_session, None)


def test_concurrent_pushes_through_the_api_all_land(xcomsim_env, xcomsim_simulation, slow_commits):
    if "postgresql" in xcomsim_simulation.settings.real_services:
        pytest.skip("PostgreSQL has a real pool; the lease is the SQLite tier's")
    with probes(xcomsim_env, 4, dag=probe_dag("lease_dag", 4)) as workers:
        batch = ConcurrentLoad(workers, 64, 10).run()
    assert batch.operations == 80
