"""The conformance kit run on the reference backend itself (it must keep everything it claims)."""

from __future__ import annotations

import pytest

from xcomsim.conformance import XComBackendContract


class TestExclusiveXComContract(XComBackendContract):
    # The kit's DAG declares no policy, so ExclusiveXCom allows every key (undeclared_dags=allow).

    @pytest.fixture
    def offload(self):
        return {"xcomsim.xcom_objectstorage_threshold": 1000}, 1000
