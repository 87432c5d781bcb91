"""Named invariants, one registry: the same names appear in code, reports and README."""

from __future__ import annotations

from xcomsim.checks.registry import INVARIANTS, Invariant, Observation, check_all, violations

__all__ = ["INVARIANTS", "Invariant", "Observation", "check_all", "violations"]
