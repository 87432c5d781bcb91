"""Mapped pushes and Airflow's own rows: values the backend did not push itself, or pushed side by side.

* Mapped instances of one task push the same key, one value each: every map index
  pulls back its own value, the whole pull gives them all in order
  (``round-trip-exact``), and deleting one index's XCom leaves its siblings'
  values (``purge-deletes-only-its-own``). A backend naming its object without
  the map index makes the instances overwrite one object.
* Airflow writes some rows itself, past the backend: ``finalize`` stores each
  operator extra link (``_link_<LinkClass>``, a URL or ``""``) straight into the
  ``xcom`` table. The backend reads them all the same when the UI or a task pulls
  them (``reads-airflow-rows``); a backend that takes every row for one of its
  references fails them.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from collections.abc import Sequence
from typing import Any

import pytest

from xcomsim.checks import InvariantViolation, same
from xcomsim.conformance.examples import guarantee
from xcomsim.conformance.offload import offload_threshold
from xcomsim.conformance.stores import read_rows
from xcomsim.conformance.verdict import CANNOT_TEST

MAP_INDEXES = (0, 1, 2)
# What finalize writes for an operator's extra links: a URL, or "" when the link cannot be built yet.
LINK_ROWS = {"_link_TriggerDagRunLink": "http://localhost:8080/dags/target/runs/manual__2024-01-01",
             "_link_BigQueryConsoleLink": ""}  # fmt: skip
_dags = itertools.count()


def mapped_dag() -> Any:
    """A task mapped over three indexes and a reader downstream of it."""
    from airflow.sdk import DAG, task

    with DAG(f"xcomsim_mapped_{next(_dags)}", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def shard(i: int) -> None:
            return None

        @task
        def reader(shards: Any) -> None:
            return None

        reader(shard.expand(i=list(MAP_INDEXES)))
    return dag


def _pull(ti: Any, whole: bool = False, **kwargs: Any) -> Any:
    """What a pull from the mapped task gives (the exception, if it raises); a whole pull as a list."""
    try:
        found = ti.xcom_pull(task_ids="shard", **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported as what the pull gave
        return exc
    if whole and isinstance(found, Sequence) and not isinstance(found, (str, bytes, list)):
        return list(found)  # Airflow's lazy sequence of the map indexes' values
    return found


class MappedTests:
    @guarantee("round-trip-exact", "purge-deletes-only-its-own")
    def test_mapped_pushes_of_one_key_stay_apart(self, xcomsim_env: Any, offload: Any, offloaded: Any) -> None:
        """Three map indexes push the same key (inline and, if the backend offloads, offloaded values); each
        pulls back its own, the whole pull gives all three, and deleting one leaves the other two."""
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.conformance.round_trip import difference
        from xcomsim.task_context import start_task_instances, thread_local_task_state

        if offload is not None:
            offload_threshold(xcomsim_env, offload)
        values = {"small": {i: f"shard {i}" for i in MAP_INDEXES}}
        if offloaded is not None:
            values["big"] = {i: offloaded(i) for i in MAP_INDEXES}
        dag = mapped_dag()
        with thread_local_task_state():
            handles = start_task_instances(dag, [("shard", i) for i in MAP_INDEXES] + [("reader", -1)])
            for handle in handles[:-1]:
                with handle.active() as ti:
                    for key, by_index in values.items():
                        ti.xcom_push(key=key, value=by_index[ti.map_index])
            problems = []
            with handles[-1].active() as ti:
                for key, by_index in values.items():
                    for i in MAP_INDEXES:
                        back = _pull(ti, key=key, map_indexes=i)
                        if not same(back, by_index[i]):
                            problems.append(f"{key!r} of map index {i}: {difference(by_index[i], back)}")
                    whole = _pull(ti, whole=True, key=key)
                    if not same(whole, [by_index[i] for i in MAP_INDEXES]):
                        problems.append(f"{key!r} pulled whole: {difference([by_index[i] for i in MAP_INDEXES], whole)}")
            if problems:
                raise InvariantViolation("round-trip-exact", problems, "mapped pushes of one key from map indexes "
                                         f"{list(MAP_INDEXES)} of task 'shard'")  # fmt: skip
            gone = MAP_INDEXES[1]
            with handles[gone].active() as ti:
                for key in values:
                    XCom.delete(key=key, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=gone)
            with handles[-1].active() as ti:
                for key, by_index in values.items():
                    for i in MAP_INDEXES:
                        back = _pull(ti, key=key, map_indexes=i)
                        if i != gone and not same(back, by_index[i]):
                            problems.append(f"{key!r} of map index {i}: {difference(by_index[i], back)}")
        if problems:
            raise InvariantViolation("purge-deletes-only-its-own", problems,
                                     f"after XCom.delete of map index {gone}'s XComs, its siblings' pulls")  # fmt: skip

    @guarantee("reads-airflow-rows")
    def test_rows_airflow_writes_itself_are_read(self, xcomsim_env: Any, contract_dag: Any) -> None:
        """Extra-link rows written the way ``finalize`` writes them (past the backend) pull back as written,
        from a task and from the API server's side (``deserialize_value`` of the stored row)."""
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.conformance.examples import one_task
        from xcomsim.conformance.round_trip import difference
        from xcomsim.task_context import thread_local_task_state

        write = getattr(XCom, "_set_xcom_in_db", None)
        if write is None:
            pytest.skip(f"{CANNOT_TEST}this Airflow's task SDK has no XCom._set_xcom_in_db: it writes no rows "
                        "past the backend")  # fmt: skip
        problems = []
        with thread_local_task_state():
            handle = one_task(contract_dag)
            with handle.active() as ti:
                for key, link in LINK_ROWS.items():
                    write(key=key, value=link, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id,
                          map_index=ti.map_index)  # fmt: skip
                for key, link in LINK_ROWS.items():
                    try:
                        back = ti.xcom_pull(task_ids=ti.task_id, key=key)
                    except Exception as exc:  # noqa: BLE001 - reported
                        back = exc
                    if not same(back, link):
                        problems.append(f"a task's pull of {key!r}: {difference(link, back)}")
        for record in read_rows(xcomsim_env, contract_dag.dag_id, handle.run_id):
            if record.key in LINK_ROWS and (record.error or not same(record.value, LINK_ROWS[record.key])):
                shown = str(record.error) if record.error else repr(record.value)
                problems.append(f"the API server's read of {record.key!r} (stored {record.stored!r}): {shown[:200]}")
        if problems:
            raise InvariantViolation("reads-airflow-rows", problems, "extra-link rows written past the backend, "
                                     "as Airflow's finalize writes them")  # fmt: skip
