"""The conformance kit run on the reference backend itself: it must keep everything it claims."""

from __future__ import annotations

import pytest

from xcomsim.conformance import XComBackendContract
from xcomsim.conformance.adversarial_scope import AdversarialScopeContract


class TestExclusiveXComContract(XComBackendContract):
    """No overrides: ExclusiveXCom declares offload, scoping, claims and its config in ``xcomsim_contract``."""

    # One generated pull form the reference does not yet refuse itself: iterating a LazyXComSequence
    # whose key Airflow cannot put into a URL ('a/../', 'éa') fails inside Airflow's own client, before
    # the backend is reached, so the refusal names neither caller nor key. Kept visible: the verdict
    # counts this expected failure as pull-scope broken.
    test_generated_pull_forms_are_scoped = pytest.mark.xfail(
        reason="LazyXComSequence of a URL-breaking key fails in Airflow's client before the backend refuses it",
        strict=False,
    )(AdversarialScopeContract.test_generated_pull_forms_are_scoped)
