"""Each mutant is caught by the kit test of the guarantee it breaks (strict xfail: not catching it fails)."""

from __future__ import annotations

import functools

import pytest

from xcomsim.conformance import XComBackendContract

caught = pytest.mark.xfail(strict=True, raises=AssertionError, reason="the mutant must be caught")


def _own_copy(test):
    """A wrapper to mark, so the contract's own test (used by other subclasses) stays unmarked."""

    @functools.wraps(test)
    def copy(*args, **kwargs):
        return test(*args, **kwargs)

    return copy


def catches(test_name: str):
    """Keep only the contract test that must catch this mutant, as a strict xfail."""

    def decorate(cls):
        for name in dir(XComBackendContract):
            if name.startswith("test_"):
                test = getattr(XComBackendContract, name)
                setattr(cls, name, caught(_own_copy(test)) if name == test_name else None)
        return cls

    return decorate


@catches("test_round_trip_is_exact")
@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.TupleToListXCom")
class TestTupleToListIsCaught(XComBackendContract):
    pass


@catches("test_offload_at_and_above_threshold_only")
@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.ThresholdOffByOneXCom")
class TestThresholdOffByOneIsCaught(XComBackendContract):
    @pytest.fixture
    def offload(self, monkeypatch):
        monkeypatch.setenv("MUTANT_THRESHOLD", "1000")
        return {}, 1000


@catches("test_racing_pushers_exactly_one_wins")
@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.ReadThenWriteGuardXCom")
class TestReadThenWriteGuardIsCaughtByTheKit(XComBackendContract):
    pass


PURGE_CONFIG = {
    "common.io.xcom_objectstorage_path": "s3://aws_default@xcomsim/xcom",
    "common.io.xcom_objectstorage_threshold": "1000",
}


@catches("test_delete_leaves_no_object_of_the_xcom")
@pytest.mark.xcomsim(backend="xcomsim.mutants.objectstorage.PurgeForgetsObjectXCom", config=PURGE_CONFIG)
class TestPurgeThatForgetsTheObjectIsCaught(XComBackendContract):
    @pytest.fixture
    def offload(self):
        return PURGE_CONFIG, 1000
