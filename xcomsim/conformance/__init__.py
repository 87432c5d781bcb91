"""The conformance kit: a contract third parties run on their own XCom backend."""

from __future__ import annotations

from xcomsim.conformance.kit import XComBackendContract, same, store_objects
from xcomsim.conformance.verdict import Verdicts

__all__ = ["Verdicts", "XComBackendContract", "same", "store_objects"]
