"""The conformance kit: a contract third parties run on their own XCom backend.

Names are imported on first use (PEP 562): the pytest plugin reads ``verdict`` in every
session, and the kit's families (Hypothesis strategies, the race scheduler, the store
readers) cost about a second to import in a session that never runs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Capabilities": "capabilities",
    "ContractDeclarationError": "capabilities",
    "declared": "capabilities",
    "Discovery": "discovery",
    "discover": "discovery",
    "XComBackendContract": "kit",
    "same": "kit",
    "XComMachine": "machine",
    "ScopeSetup": "scope",
    "xcomsim_policy_scoping": "scope",
    "observe": "stores",
    "store_objects": "stores",
    "store_sizes": "stores",
    "stored_values": "stores",
    "Verdicts": "verdict",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from xcomsim.conformance.capabilities import Capabilities, ContractDeclarationError, declared
    from xcomsim.conformance.discovery import Discovery, discover
    from xcomsim.conformance.kit import XComBackendContract, same
    from xcomsim.conformance.machine import XComMachine
    from xcomsim.conformance.scope import ScopeSetup, xcomsim_policy_scoping
    from xcomsim.conformance.stores import observe, store_objects, store_sizes, stored_values
    from xcomsim.conformance.verdict import Verdicts
