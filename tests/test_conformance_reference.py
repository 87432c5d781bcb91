"""The conformance kit run on the reference backend itself (it must keep everything it claims)."""

from __future__ import annotations

import pytest

from xcomsim.conformance import XComBackendContract


# The kit's DAG declares no policy, so ExclusiveXCom allows every key (undeclared_dags=allow);
# reruns need the documented escape from push-once, set globally for such DAGs.
@pytest.mark.xcomsim(config={"xcomsim.retry_replaces": "true"})
class TestExclusiveXComContract(XComBackendContract):
    @pytest.fixture
    def offload(self):
        return {"xcomsim.xcom_objectstorage_threshold": 1000}, 1000
