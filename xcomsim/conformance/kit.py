"""The contract any XCom backend can run: a test mixin plus fixtures to override.

Adopt it in a test module of your own (fsspec's ``tests/abstract`` is the model)::

    import pytest
    from xcomsim.conformance import XComBackendContract

    @pytest.mark.xcomsim(backend="my_pkg.xcom.MyXCom", config={"my.section.option": "..."})
    class TestMyXCom(XComBackendContract):
        @pytest.fixture
        def offload(self):            # claim offload: the config that sets a threshold, and it
            return {"my.section.threshold": "1000"}, 1000

and run it with ``pytest --xcomsim`` — or declare the same on the backend class
(``xcomsim_contract``, see ``capabilities``) and run ``pytest --xcomsim
--xcomsim-backend=my_pkg.xcom.MyXCom``. Anything not declared about offload is
discovered by probing (``discovery``). Each test is marked with the guarantees
it checks; the end of the run prints kept / broken / inherited / not claimed
per guarantee. The checks look at what landed (the ``xcom`` table and every
store the backend can reach), not at what the backend says about itself.

The tests live in one module per guarantee family (``push_once``,
``round_trip``, ``scope``, ``claims``, ``offload``); this class composes them
with the fixtures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from xcomsim.checks import same
from xcomsim.conformance.adversarial_scope import AdversarialScopeContract
from xcomsim.conformance.callers import CallerTests
from xcomsim.conformance.capabilities import Capabilities, declared
from xcomsim.conformance.claims import ClaimTests
from xcomsim.conformance.discovery import MAX_PROBE, Discovery, discover
from xcomsim.conformance.examples import examples, guarantee, one_task, record
from xcomsim.conformance.fencing import FencingTests
from xcomsim.conformance.liveness import LivenessContract
from xcomsim.conformance.machine import XComMachine
from xcomsim.conformance.mapped import MappedTests
from xcomsim.conformance.offload import OffloadTests
from xcomsim.conformance.push_once import PushOnceTests, refuses_second_push
from xcomsim.conformance.round_trip import RoundTripTests
from xcomsim.conformance.scope import ScopeSetup, ScopeTests, xcomsim_policy_scoping
from xcomsim.conformance.stores import store_objects, store_sizes
from xcomsim.conformance.verdict import CANNOT_TEST
from xcomsim.scheduler.workload import workload_dag
from xcomsim.strategies._internal.families import numbered

MAX_REFERENCE = 1024


def probe_ceiling(typed: Any) -> int:
    """``--xcomsim-probe-max`` (bytes; ``16MiB``, ``1048577``) as an int, or a usage error naming it."""
    text = str(typed or "").strip().replace("_", "")
    if not text:
        return MAX_PROBE
    found = re.fullmatch(r"(\d+)\s*(KiB|MiB|GiB|B)?(\s*\+\s*(\d+))?", text)
    if not found or int(found.group(1)) < 2:
        raise pytest.UsageError(f"xcomsim: --xcomsim-probe-max={typed!r}: a size of 2 bytes or more, such as "
                                "16777217 or 16MiB+1")  # fmt: skip
    scale = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}.get(found.group(2) or "B", 1)
    return int(found.group(1)) * scale + int(found.group(4) or 0)


def _folder(request: Any) -> str:
    """The folder of the test's module, from the rootdir: where a conftest.py reaches the kit's tests."""
    import os

    return os.path.relpath(request.node.path.parent, request.config.rootpath)

__all__ = ["ScopeSetup", "XComBackendContract", "same", "store_objects", "store_sizes", "xcomsim_policy_scoping"]


class ModelTests:
    @guarantee("push-once", "round-trip-exact", "no-dangling-reference", "exactly-one-claim-winner", "no-lost-claim")
    def test_backend_agrees_with_the_model(
        self, request: Any, xcomsim_env: Any, contract_dag: Any, offload: Any, claim_store: Any,
        push_once: bool | None,
    ) -> None:  # fmt: skip
        """Push, pull, claim, release, faults and crashes in any order: the backend behaves like a dict.

        Only what the backend claims is judged (and reported): push-once when claimed or evidently
        guarded, dangling references when it offloads, claims when it has a claim store.
        """
        threshold = None
        if offload is not None:
            xcomsim_env.set_config(offload[0])
            threshold = None if offload[1] is None else int(offload[1])
        from xcomsim.task_context import thread_local_task_state

        # Each example is up to 10 steps of real I/O, and shrinking one takes minutes: the first failing
        # sequence is reported as found (the targeted tests above give each guarantee's minimal story).
        # The invariants look up only the objects an example's rows name, so 20 sequences (ci) cost seconds.
        budget = max(10, settings().max_examples // 5)
        run = examples(max_examples=budget, stateful_step_count=10, report_multiple_bugs=False,
                       phases=[Phase.explicit, Phase.reuse, Phase.generate])  # fmt: skip
        with thread_local_task_state():
            handle = one_task(contract_dag)
            guarded = push_once if push_once is not None else refuses_second_push(handle)
            judged = ["round-trip-exact"] + ["push-once"] * bool(guarded)
            judged += ["no-dangling-reference"] * (threshold is not None)
            judged += ["exactly-one-claim-winner", "no-lost-claim"] * (claim_store is not None)
            record(request, "xcomsim_judged", tuple(judged))
            machine = XComMachine.bind(xcomsim_env, handle, threshold, claim_store() if claim_store else None,
                                       push_once=bool(guarded))  # fmt: skip
            run_state_machine_as_test(machine, settings=run)


class XComBackendContract(PushOnceTests, RoundTripTests, MappedTests, ScopeTests, AdversarialScopeContract,
                          ClaimTests, OffloadTests, LivenessContract, CallerTests, FencingTests, ModelTests):
    """Tests only; the fixtures below are what an adopter overrides."""

    #: Whether adopting the contract claims push-once when the backend does not declare it (None: judged
    #: by behaviour, held only to a backend that refuses a second push; declare ``push_once`` to claim it).
    push_once_unless_declared: bool | None = None

    @classmethod
    def checks_for(cls, guarantee_name: str) -> list[str]:
        """The names of the targeted contract tests that check ``guarantee_name`` (the model test aside)."""
        found = []
        for name in dir(cls):
            marks = getattr(getattr(cls, name), "pytestmark", []) if name.startswith("test_") else []
            names = {n for m in marks if m.name == "xcomsim_guarantee" for n in m.args}
            if guarantee_name in names and name != "test_backend_agrees_with_the_model":
                found.append(name)
        return found

    # ---------------------------------------------------------------- fixtures to override
    @pytest.fixture
    def contract(self, xcomsim_env: Any) -> Capabilities:
        """What the backend class declares (``xcomsim_contract``); the fixtures below default to it."""
        return declared(xcomsim_env.backend)

    @pytest.fixture(autouse=True)
    def _contract_config(self, xcomsim_env: Any, contract: Capabilities) -> None:
        if contract.config:
            xcomsim_env.set_config(contract.config)

    @pytest.fixture
    def contract_dag(self) -> Any:
        """The DAG whose one task instance the workers act as (attach a policy here if you need one)."""
        return workload_dag("xcomsim_contract")

    @pytest.fixture
    def probe_max(self, request: Any) -> int:
        """The largest serialised size discovery probes, in bytes (``--xcomsim-probe-max``; 16 MiB + 1)."""
        return probe_ceiling(request.config.getoption("xcomsim_probe_max", None)
                             or request.config.getini("xcomsim_probe_max"))  # fmt: skip

    @pytest.fixture
    def discovered(self, request: Any, xcomsim_env: Any, contract: Capabilities, probe_max: int) -> Discovery:
        """What probing the backend found: whether, where and what (bytes, items, depth, types) makes it offload."""
        config = {**contract.config, **(contract.offload[0] if contract.offload else {})}
        xcomsim_env.set_config(config)
        backend = xcomsim_env.backend
        found = discover(xcomsim_env, (f"{backend.__module__}.{backend.__qualname__}", tuple(sorted(
            (k, str(v)) for k, v in config.items()))), where=_folder(request), probe_max=probe_max)  # fmt: skip
        record(request, "xcomsim_discovered", found.describe())
        return found

    @pytest.fixture
    def offload(self, contract: Capabilities, request: Any) -> tuple[dict[str, Any], int] | None:
        """``(config, threshold)`` if the backend offloads values of ``threshold`` bytes and more; None: it does not.

        Declared (``xcomsim_contract['offload']``) wins; else what discovery found.
        """
        if contract.offload is not None:
            return contract.offload
        found = request.getfixturevalue("discovered")
        if found.error:
            pytest.skip(f"{CANNOT_TEST}{found.describe()}")
        return ({}, found.threshold) if found.offloads else None

    @pytest.fixture
    def offloaded(self, offload: Any, request: Any) -> Callable[[int], Any] | None:
        """A factory of distinct values that offload (``n`` -> value): past the threshold, else of a discovered
        trigger (a type, an item count, a depth); None: nothing offloads."""
        if offload is None:
            return None
        if offload[1] is not None:
            size = max(64, int(offload[1]) * 8)
            return lambda n: numbered(size + n, n)
        return request.getfixturevalue("discovered").offloaded_value

    @pytest.fixture
    def push_once(self, contract: Capabilities) -> bool | None:
        """True: claimed; False: not claimed; None: claimed if the backend refuses a second push."""
        return contract.push_once if contract.push_once is not None else self.push_once_unless_declared

    @pytest.fixture
    def scoping(self, contract: Capabilities) -> ScopeSetup | None:
        """A ``ScopeSetup`` if the backend enforces key scoping; None: not claimed."""
        return xcomsim_policy_scoping() if contract.scoping == "xcomsim-policy" else None

    @pytest.fixture
    def claim_store(self, contract: Capabilities) -> Callable[[], Any] | None:
        """A zero-argument factory of the claim store (``try_claim``/``release``); None: not claimed."""
        return contract.claim_store
