"""The reference ExclusiveXCom backend: policy, push-once guard, offload, claims, sweeper.

Importing this package imports Airflow's task SDK (the backend is a BaseXCom).
"""

from __future__ import annotations

from xcomsim.backend.errors import (
    ExclusiveXComError,
    XComFencedError,
    XComOverwriteError,
    XComPolicyError,
    XComScopeError,
    XComStoreError,
    XComValueError,
)
from xcomsim.backend.policy import XComPolicy, policy_for
from xcomsim.backend.xcom import ExclusiveXCom

__all__ = [
    "ExclusiveXCom",
    "ExclusiveXComError",
    "XComFencedError",
    "XComOverwriteError",
    "XComPolicy",
    "XComPolicyError",
    "XComScopeError",
    "XComStoreError",
    "XComValueError",
    "policy_for",
]
