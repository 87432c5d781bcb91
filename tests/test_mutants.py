"""Each mutant is caught by the kit test of the guarantee it breaks (strict xfail: not catching it fails)."""

from __future__ import annotations

import pytest

from xcomsim.conformance import XComBackendContract

caught = pytest.mark.xfail(strict=True, raises=AssertionError, reason="the mutant must be caught")


@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.TupleToListXCom")
class TestTupleToListIsCaught(XComBackendContract):
    test_round_trip_is_exact = caught(XComBackendContract.test_round_trip_is_exact)
    test_second_push_raises_and_first_value_stays = None
    test_racing_pushers_exactly_one_wins = None
    test_offload_at_and_above_threshold_only = None
    test_delete_leaves_no_object_of_the_xcom = None
    test_reruns_leave_at_most_one_object_per_live_xcom = None


@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.ThresholdOffByOneXCom", config={"mutant.unused": "x"})
class TestThresholdOffByOneIsCaught(XComBackendContract):
    @pytest.fixture
    def offload(self, monkeypatch):
        monkeypatch.setenv("MUTANT_THRESHOLD", "1000")
        return {}, 1000

    test_offload_at_and_above_threshold_only = caught(XComBackendContract.test_offload_at_and_above_threshold_only)
    test_round_trip_is_exact = None
    test_second_push_raises_and_first_value_stays = None
    test_racing_pushers_exactly_one_wins = None
    test_delete_leaves_no_object_of_the_xcom = None
    test_reruns_leave_at_most_one_object_per_live_xcom = None


@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.ReadThenWriteGuardXCom")
class TestReadThenWriteGuardIsCaughtByTheKit(XComBackendContract):
    test_racing_pushers_exactly_one_wins = caught(XComBackendContract.test_racing_pushers_exactly_one_wins)
    test_second_push_raises_and_first_value_stays = None
    test_round_trip_is_exact = None
    test_offload_at_and_above_threshold_only = None
    test_delete_leaves_no_object_of_the_xcom = None
    test_reruns_leave_at_most_one_object_per_live_xcom = None


PURGE_CONFIG = {
    "common.io.xcom_objectstorage_path": "s3://aws_default@xcomsim/xcom",
    "common.io.xcom_objectstorage_threshold": "1000",
}


@pytest.mark.xcomsim(backend="xcomsim.mutants.objectstorage.PurgeForgetsObjectXCom", config=PURGE_CONFIG)
class TestPurgeThatForgetsTheObjectIsCaught(XComBackendContract):
    @pytest.fixture
    def offload(self):
        return PURGE_CONFIG, 1000

    test_delete_leaves_no_object_of_the_xcom = caught(XComBackendContract.test_delete_leaves_no_object_of_the_xcom)
    test_reruns_leave_at_most_one_object_per_live_xcom = None
    test_offload_at_and_above_threshold_only = None
    test_round_trip_is_exact = None
    test_second_push_raises_and_first_value_stays = None
    test_racing_pushers_exactly_one_wins = None
