"""Public Hypothesis strategies for XCom testing; the implementations live in ``_internal``."""

from __future__ import annotations

from xcomsim.strategies._internal.identifiers import (
    invalid_xcom_keys,
    map_indexes,
    reserved_xcom_keys,
    task_ids,
    xcom_keys,
)
from xcomsim.strategies._internal.payloads import (
    payloads_at_threshold,
    serde_values,
    serialized_size,
    sized_string,
    threshold_sizes,
)
from xcomsim.strategies._internal.scope_forms import (
    BOOKKEEPING_KEY,
    PULL_VIAS,
    PUSH_VIAS,
    PullForm,
    PushForm,
    adversarial_keys,
    pull_forms,
    push_forms,
)
from xcomsim.strategies._internal.workloads import (
    Claim,
    Crash,
    Delete,
    Operation,
    Pull,
    Push,
    Release,
    Retry,
    Sweep,
    Takeover,
    Wait,
    operations,
    workloads,
)

__all__ = [
    "BOOKKEEPING_KEY",
    "PULL_VIAS",
    "PUSH_VIAS",
    "PullForm",
    "PushForm",
    "adversarial_keys",
    "pull_forms",
    "push_forms",
    "Claim",
    "Crash",
    "Delete",
    "Operation",
    "Pull",
    "Push",
    "Release",
    "Retry",
    "Sweep",
    "Takeover",
    "Wait",
    "invalid_xcom_keys",
    "map_indexes",
    "operations",
    "payloads_at_threshold",
    "reserved_xcom_keys",
    "serde_values",
    "serialized_size",
    "sized_string",
    "task_ids",
    "threshold_sizes",
    "workloads",
    "xcom_keys",
]
