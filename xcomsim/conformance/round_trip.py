"""Round trip: a pulled value equals, type for type, what was pushed, on every path the backend has.

Small serde values (the inline path), values at and around the offload
threshold (ASCII, multi-byte, any value padded past it), and values that
look like references. Each mismatch is replayed through Airflow's own
``BaseXCom``: one Airflow shares is inherited, not the backend's break, and
the example is rejected so the counterexample shown is the backend's own.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from xcomsim.checks import same
from xcomsim.conformance.baseline import INHERITED, baseline_round_trip
from xcomsim.conformance.examples import EXAMPLES, FirstFailure, guarantee, one_task, record
from xcomsim.strategies import serde_values
from xcomsim.strategies._internal.payloads import offload_path_values, reference_lookalikes

_CHECKED = settings(EXAMPLES, suppress_health_check=[*EXAMPLES.suppress_health_check, HealthCheck.filter_too_much])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else f"{text[:60]} ... {text[-25:]} ({len(text)} chars)"


class _Differential:
    """Push, pull, compare; a mismatch Airflow's baseline shares is noted as inherited and rejected."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.keys = itertools.count()
        self.inherited: list[str] = []

    def check(self, value: Any) -> None:
        key = f"v{next(self.keys)}"
        with self.handle.active() as ti:
            ti.xcom_push(key=key, value=value)
            back = ti.xcom_pull(task_ids=ti.task_id, key=key)
        if same(back, value):
            return
        kept, airflow = baseline_round_trip(self.handle, value)
        if not kept:
            if len(self.inherited) < 3:
                self.inherited.append(f"pushed {_short(value)}, pulled {_short(back)} (Airflow: {_short(airflow)})")
            reject()
        raise AssertionError(f"[round-trip-exact] pushed {_short(value)}, pulled {_short(back)}; "
                             f"Airflow's BaseXCom keeps it")  # fmt: skip

    def report(self, request: Any) -> None:
        for line in self.inherited:
            record(request, "xcomsim_inherited", ("round-trip-exact", f"{INHERITED}: {line}"))


class RoundTripTests:
    def _round_trip(self, request: Any, dag: Any, values: st.SearchStrategy[Any]) -> None:
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            differential = _Differential(one_task(dag))
            counter = FirstFailure()

            @_CHECKED
            @given(value=values)
            @counter.count
            def round_trip(value: Any) -> None:
                differential.check(value)

            try:
                counter.run(round_trip)
            finally:
                differential.report(request)

    @guarantee("round-trip-exact")
    def test_round_trip_is_exact(self, request: Any, xcomsim_env: Any, contract_dag: Any) -> None:
        self._round_trip(request, contract_dag, serde_values())

    @guarantee("round-trip-exact")
    def test_round_trip_through_every_path(self, request: Any, xcomsim_env: Any, contract_dag: Any,
                                           offload: Any, discovered: Any) -> None:  # fmt: skip
        """At, below and above the threshold, multi-byte text, and strings and dicts that look like references."""
        if offload is not None:
            xcomsim_env.set_config(offload[0])
        learned = (discovered.reference,) if discovered.reference is not None else ()
        values = reference_lookalikes(learned)
        if offload is not None:
            values = st.one_of(values, offload_path_values(int(offload[1])))
        self._round_trip(request, contract_dag, values)
