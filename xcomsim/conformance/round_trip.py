"""Round trip: a pulled value equals, type for type, what was pushed, on every path the backend has.

Small serde values (the inline path), values at and around the offload
threshold (ASCII, multi-byte, any value padded past it), and values that
look like references. Each mismatch is replayed through Airflow's own
``BaseXCom``: one Airflow shares is inherited, not the backend's break, and
the example is rejected so the counterexample shown is the backend's own.
"""

from __future__ import annotations

import itertools
import os
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from xcomsim.checks import same
from xcomsim.conformance.baseline import INHERITED, baseline_round_trip
from xcomsim.conformance.examples import FirstFailure, examples, guarantee, one_task, record
from xcomsim.conformance.verdict import CANNOT_TEST
from xcomsim.strategies import serde_values, sized_string
from xcomsim.strategies._internal.families import (
    MAX_ITEMS,
    allow_family_classes,
    backend_constants,
    family_edges,
    large_sizes,
    reference_variants,
    value_families,
)
from xcomsim.strategies._internal.payloads import (
    LOOKALIKE_STRINGS,
    offload_path_values,
    reference_lookalikes,
    utf8_sized_string,
)

SHRINK_BUDGET = 30  # examples after the first failure (each is a push and a pull, and Airflow's own)
AIRFLOW_LIMITS = (float("inf"), float("-inf"), [float("inf")], -0.0, 0.0, (1, [2.5]))


def _short(value: Any) -> str:
    text = repr(value).replace("\n", "\\n")  # one line (a DataFrame's repr has many)
    return text if len(text) <= 100 else f"{text[:60]} ... {text[-25:]} ({len(text)} chars)"


def difference(pushed: Any, pulled: Any, width: int = 60) -> str:
    """Pushed and pulled side by side, cut to the first span where they differ (a tuple's ``(``, a list's ``[``)."""
    a, b = repr(pushed).replace("\n", "\\n"), repr(pulled).replace("\n", "\\n")
    if a == b:  # the same text, another type (a numpy scalar, a subclass)
        a, b = f"{type(pushed).__name__} {a}", f"{type(pulled).__name__} {b}"
    if len(a) <= width and len(b) <= width:
        return f"pushed {a}, pulled {b}"
    at = len(os.path.commonprefix([a, b]))
    start = max(0, at - width // 4)

    def cut(text: str) -> str:
        return ("..." if start else "") + text[start: start + width] + ("..." if start + width < len(text) else "")

    return f"pushed {cut(a)}, pulled {cut(b)} (first difference at character {at} of {len(a)})"


class _Differential:
    """Push, pull, compare; a mismatch Airflow's baseline shares is noted as inherited and rejected."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.keys = itertools.count()
        self.inherited: dict[str, tuple[int, str]] = {}  # Airflow's outcome -> the shortest example

    def check(self, value: Any) -> bool:
        """True: kept; False: broken the way Airflow's own breaks it (noted); raises when only the backend breaks it."""
        key = f"v{next(self.keys)}"
        raised: Exception | None = None
        try:
            with self.handle.active() as ti:
                ti.xcom_push(key=key, value=value)
                back = ti.xcom_pull(task_ids=ti.task_id, key=key)
        except Exception as exc:  # noqa: BLE001 - judged against Airflow's own below
            raised, back = exc, exc
        if raised is None and same(back, value):
            return True
        kept, airflow = baseline_round_trip(self.handle, value)
        if not kept:
            outcome = (f"{type(airflow).__name__}: {str(airflow)[:80]}" if isinstance(airflow, Exception)
                       else f"{type(value).__name__} comes back changed")  # fmt: skip
            shown = repr(value)
            if outcome not in self.inherited or len(shown) < self.inherited[outcome][0]:
                airflow_did = f"Airflow raises {_short(airflow)}" if isinstance(airflow, Exception) else (
                    f"Airflow pulls {_short(airflow)}")  # fmt: skip
                self.inherited[outcome] = (len(shown), f"{_short(value)}: {airflow_did}; the backend: {_short(back)}")
            return False
        if raised is not None:
            raise AssertionError(f"[round-trip-exact] pushing and pulling {_short(value)} raised {raised!r}; "
                                 "Airflow's BaseXCom keeps it") from raised
        raise AssertionError(f"[round-trip-exact] {difference(value, back)}; Airflow's BaseXCom keeps it")

    def report(self, request: Any) -> None:
        for _, line in self.inherited.values():
            record(request, "xcomsim_inherited", ("round-trip-exact", f"{INHERITED}: {line}"))


def _fresh_reference(env: Any, dag: Any, offloaded: Any) -> Any:
    """Push a value that offloads and return its row as stored: a reference whose object exists now."""
    from xcomsim.task_context import thread_local_task_state

    with thread_local_task_state():
        handle = one_task(dag)
        with handle.active() as ti:
            ti.xcom_push(key="xcomsim_learned_reference", value=offloaded(0))
    return next(r["value"] for r in env.xcom_rows() if r["run_id"] == handle.run_id
                and r["key"] == "xcomsim_learned_reference")  # fmt: skip


class RoundTripTests:
    def _round_trip(self, request: Any, dag: Any, values: st.SearchStrategy[Any], edges: tuple[Any, ...] = (),
                    share: int = 1) -> None:  # fmt: skip
        """Every edge once, then ``1/share`` of the profile's examples drawn from ``values`` (the edges already
        hold one value of each family and trigger; each example is a push and a pull)."""
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            differential = _Differential(one_task(dag))
            for value in edges:  # every edge once, whatever the example budget
                try:
                    differential.check(value)
                except AssertionError as exc:
                    differential.report(request)
                    exc.add_note(f"xcomsim: the edge value {_short(value)} (one of {len(edges)} always tried)")
                    raise
            counter = FirstFailure(shrink_budget=SHRINK_BUDGET)

            @examples(max_examples=max(10, settings().max_examples // share))
            @given(value=values)
            @counter.count
            def round_trip(value: Any) -> None:
                if not differential.check(value):
                    reject()  # Airflow's own limit: steer to values the baseline keeps

            try:
                counter.run(round_trip)
            finally:
                differential.report(request)

    @guarantee("round-trip-exact")
    def test_round_trip_is_exact(self, request: Any, xcomsim_env: Any, contract_dag: Any, discovered: Any) -> None:
        """Drawn from every value family (``xcomsim.strategies.value_families``) and serde's nested values.

        Each family's edges are tried once whatever the budget; a value Airflow's own inline path does
        not keep either is inherited. Not run when discovery failed: what made the probe fail (a missing
        bucket) fails any value the backend offloads, and that is the test's setup, not its round trip.
        """
        if discovered.error:
            pytest.skip(f"{CANNOT_TEST}{discovered.describe()}")
        allow_family_classes()
        constants = backend_constants(xcomsim_env.backend)
        values = st.one_of(serde_values(max_leaves=8, infinities=False),
                           value_families(constants, discovered.reference, ceiling=4096, max_items=MAX_ITEMS))
        edges = (*AIRFLOW_LIMITS, *family_edges(constants, sizes=False))
        self._round_trip(request, contract_dag, values, edges)

    @guarantee("round-trip-exact")
    def test_round_trip_through_every_path(self, request: Any, xcomsim_env: Any, contract_dag: Any,
                                           offload: Any, offloaded: Any, discovered: Any,
                                           probe_max: int) -> None:  # fmt: skip
        """At, below and above the threshold, multi-byte text, values of each discovered trigger (a count, a
        depth, a type), large values to the probe ceiling, and strings and dicts that look like references:
        among them a row the backend writes in this test, whose object exists (discovery's may be gone)."""
        if offload is not None:
            xcomsim_env.set_config(offload[0])
        allow_family_classes()
        reference = _fresh_reference(xcomsim_env, contract_dag, offloaded) if offloaded is not None else None
        learned = tuple(r for r in (reference, discovered.reference) if r is not None)
        values = reference_lookalikes(learned)
        edges = [*LOOKALIKE_STRINGS, *(v for r in learned for v in reference_variants(r)),
                 {"__s3_uri": LOOKALIKE_STRINGS[0]}]  # fmt: skip
        large = large_sizes(probe_max)
        edges += [sized_string(size) for size in large] + [utf8_sized_string(size) for size in large[1:2]]
        triggered = discovered.triggered_values()
        if triggered:
            values = st.one_of(values, st.sampled_from(triggered))
            edges += triggered
        if offload is not None and offload[1] is not None:
            threshold = int(offload[1])
            values = st.one_of(values, offload_path_values(threshold))
            sizes = sorted({s for s in (threshold - 1, threshold, threshold + 1, threshold * 4) if s >= 2} | {2})
            edges += [sized_string(s) for s in sizes] + [utf8_sized_string(s) for s in sizes]
            edges += [(sized_string(max(2, threshold)), (1, "a"), datetime(2024, 1, 1, tzinfo=timezone.utc))]
            edges += [(sized_string(max(2, threshold)), value) for value in family_edges(sizes=False)[::6]]
        self._round_trip(request, contract_dag, values, tuple(edges), share=4)
