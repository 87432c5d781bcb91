"""The conformance kit on the reference with its guards in Redis and its values in S3 (``[xcomsim] guard_path``).

Only the families where the guards' store matters run again: push-once, fencing of tries, liveness (crashes and
faults at every I/O of a push, retries, gc); scope, claims, callers and round trips are the full run's
(``test_conformance_reference.py``).
"""

from __future__ import annotations

import pytest

from xcomsim.conformance import XComBackendContract
from xcomsim.conformance.fencing import FencingTests
from xcomsim.conformance.liveness import LivenessContract
from xcomsim.conformance.push_once import PushOnceTests

_KEPT = {name for family in (PushOnceTests, FencingTests, LivenessContract) for name in dir(family)
         if name.startswith("test_")}  # fmt: skip


@pytest.mark.xcomsim(backend="xcom_backends.RedisGuardsXCom")
class TestExclusiveXComGuardsInRedis(XComBackendContract):
    pass


for _name in [n for n in dir(XComBackendContract) if n.startswith("test_") and n not in _KEPT]:
    setattr(TestExclusiveXComGuardsInRedis, _name, None)  # not collected: the full run has it


def test_the_backend_under_test_keeps_its_guards_in_redis():
    from xcom_backends import RedisGuardsXCom

    assert RedisGuardsXCom.xcomsim_contract["config"]["xcomsim.guard_path"].startswith("redis://")
    assert len([n for n in dir(TestExclusiveXComGuardsInRedis) if n.startswith("test_")
                and getattr(TestExclusiveXComGuardsInRedis, n)]) == len(_KEPT)  # fmt: skip
