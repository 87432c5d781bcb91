"""The conformance kit run on the reference backend itself: it must keep everything it claims."""

from __future__ import annotations

from xcomsim.conformance import XComBackendContract


class TestExclusiveXComContract(XComBackendContract):
    """No overrides: ExclusiveXCom declares offload, scoping, claims and its config in ``xcomsim_contract``."""
