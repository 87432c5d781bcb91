"""The conformance kit: a contract third parties run on their own XCom backend."""

from __future__ import annotations

from xcomsim.conformance.capabilities import Capabilities, ContractDeclarationError, declared
from xcomsim.conformance.discovery import Discovery, discover
from xcomsim.conformance.kit import XComBackendContract, same
from xcomsim.conformance.machine import XComMachine
from xcomsim.conformance.scope import ScopeSetup, xcomsim_policy_scoping
from xcomsim.conformance.stores import observe, store_objects, store_sizes, stored_values
from xcomsim.conformance.verdict import Verdicts

__all__ = [
    "Capabilities",
    "ContractDeclarationError",
    "Discovery",
    "ScopeSetup",
    "Verdicts",
    "XComBackendContract",
    "XComMachine",
    "declared",
    "discover",
    "observe",
    "same",
    "store_objects",
    "store_sizes",
    "stored_values",
    "xcomsim_policy_scoping",
]
