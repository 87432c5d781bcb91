"""The throughput comparison's figures, from phases already measured (no deployment)."""

from __future__ import annotations

from xcomsim.soak.throughput import _median, table


def _phase(cpu: float, costs: dict[str, float | None]) -> dict[str, object]:
    return {"runs_per_minute": 30.0, "pusher_cpu_seconds_p50": cpu, "push_cpu_ms_p50": costs}


def test_the_median_of_per_key_figures_is_taken_key_by_key_and_a_missing_key_is_skipped():
    phases = [_phase(0.06, {"small": 4.0, "large": 10.0}), _phase(0.08, {"small": 6.0, "attempt": 3.0})]
    assert _median(phases) == {"runs_per_minute": 30.0, "pusher_cpu_seconds_p50": 0.07,
                               "push_cpu_ms_p50": {"small": 5.0, "large": 10.0, "attempt": 3.0}}  # fmt: skip


def test_the_table_gives_the_ratio_and_each_backends_push_costs_in_push_order():
    rows = {"x.ExclusiveXCom": _median([_phase(0.06, {"attempt": 2.0, "small": 4.0, "large": 3.0})]),
            "y.BaseXCom": _median([_phase(0.05, {"small": 0.5, "large": 0.5, "attempt": 0.5})])}  # fmt: skip
    for row in rows.values():
        row.update({k: 1 for k in ("task_instances_per_second", "pusher_seconds_p50", "push_ms_p50", "pull_ms_p50",
                                   "pull_ms_p90", "xcom_value_bytes_per_run")})  # fmt: skip
    text = table({"backends": rows})
    assert "| ratio | 1.00x | 1.00x | 1.00x | 1.20x |" in text
    assert "ExclusiveXCom: CPU ms of a push (p50), by key: small 4.0, large 3.0, attempt 2.0" in text
    assert "BaseXCom: CPU ms of a push (p50), by key: small 0.5, large 0.5, attempt 0.5" in text
