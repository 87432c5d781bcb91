"""The contract as a test module, collected by ``pytest --xcomsim --xcomsim-backend=...``.

It runs against the session's backend with what the backend declares in
``xcomsim_contract`` (see ``xcomsim.conformance.capabilities``) and what
probing it discovers; push-once is held only to a backend that declares it or
refuses a second push (Airflow's own replaces the value). ``--xcomsim-conformance=off``
leaves it out, ``on`` collects it for the default backend too.
"""

from __future__ import annotations

from xcomsim.conformance.kit import XComBackendContract


class TestBackendContract(XComBackendContract):
    """Every contract test, on the backend under test."""
