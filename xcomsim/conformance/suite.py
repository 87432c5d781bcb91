"""The contract as a test module, collected by ``pytest --xcomsim --xcomsim-backend=...``.

It runs against the session's backend with what the backend declares in
``xcomsim_contract`` (see ``xcomsim.conformance.capabilities``); anything it
does not declare is reported as not claimed. ``--xcomsim-conformance=off``
leaves it out, ``on`` collects it for the default backend too.
"""

from __future__ import annotations

from xcomsim.conformance.kit import XComBackendContract


class TestBackendContract(XComBackendContract):
    """Every contract test, on the backend under test."""
