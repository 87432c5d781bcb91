"""The conformance kit: a contract third parties run on their own XCom backend."""

from __future__ import annotations

from xcomsim.conformance.capabilities import Capabilities, ContractDeclarationError, declared
from xcomsim.conformance.kit import ScopeSetup, XComBackendContract, same, xcomsim_policy_scoping
from xcomsim.conformance.machine import XComMachine
from xcomsim.conformance.stores import observe, store_objects, store_sizes, stored_values
from xcomsim.conformance.verdict import Verdicts

__all__ = [
    "Capabilities",
    "ContractDeclarationError",
    "ScopeSetup",
    "Verdicts",
    "XComBackendContract",
    "XComMachine",
    "declared",
    "observe",
    "same",
    "store_objects",
    "store_sizes",
    "stored_values",
    "xcomsim_policy_scoping",
]
