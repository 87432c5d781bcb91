"""Named invariants, one registry: the same names appear in code, reports and README."""

from __future__ import annotations

from xcomsim.checks.registry import (
    INVARIANTS,
    Invariant,
    InvariantViolation,
    Observation,
    ScopeAttempt,
    check_all,
    require,
    violations,
)
from xcomsim.checks.values import references, refers_to, same

__all__ = [
    "INVARIANTS",
    "Invariant",
    "InvariantViolation",
    "Observation",
    "ScopeAttempt",
    "check_all",
    "references",
    "refers_to",
    "require",
    "same",
    "violations",
]
