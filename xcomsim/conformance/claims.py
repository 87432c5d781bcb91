"""Claims: exactly one worker wins a claim, and a released or expired claim can be won again."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from xcomsim.checks import Observation, require
from xcomsim.conformance.examples import FirstFailure, examples, guarantee, one_task
from xcomsim.scheduler import hypothesis_chooser
from xcomsim.scheduler.workload import run_workload
from xcomsim.strategies import Claim, Crash, Release, Wait, workloads


DEGENERATE_LEASES = (0, 0.0, -1, -0.001)


def open_claims(claim_store: Any) -> Any:
    if claim_store is None:
        pytest.skip("not claimed: override the 'claim_store' fixture, or declare xcomsim_contract['claim_store']")
    return claim_store()


class ClaimTests:
    @guarantee("exactly-one-claim-winner", "no-lost-claim")
    def test_claim_races(self, xcomsim_env: Any, contract_dag: Any, claim_store: Any) -> None:
        store = open_claims(claim_store)
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            handle = one_task(contract_dag)
            ids = itertools.count()

            counter = FirstFailure()

            @examples()
            @given(workload=workloads(workers=(2, 3), keys=(), claim_ids=("c",), max_ops=3, leases=False),
                   data=st.data())  # fmt: skip
            @counter.count
            def race(workload: list[list[Any]], data: Any) -> None:
                claim_id = f"c{next(ids)}"  # a fresh claim per example
                workload = [[type(op)(claim_id) if isinstance(op, (Claim, Release)) else op for op in ops]
                            for ops in workload]  # fmt: skip
                history = run_workload(workload, dag=contract_dag, claim_store=store, handle=handle,
                                       chooser=hypothesis_chooser(data))  # fmt: skip
                note(history.describe())
                require(["exactly-one-claim-winner", "no-lost-claim"], Observation(history))

            counter.run(race)

    @guarantee("exactly-one-claim-winner")
    def test_a_lease_of_zero_or_below_never_makes_two_winners(self, xcomsim_env: Any, claim_store: Any) -> None:
        """Two claimants in turn on one claim, each asking for a lease of 0 (or below): at most one wins.

        A store may refuse such a lease (any error); one that takes it makes a claim that is over as
        it starts, and every claimant wins the one resource.
        """
        store = open_claims(claim_store)
        for n, lease in enumerate(DEGENERATE_LEASES):
            claim_id = f"xcomsim-lease-{uuid.uuid4().hex[:12]}-{n}"  # new on a shared store too
            winners = []
            for worker in ("w1", "w2"):
                try:
                    if store.try_claim(claim_id, worker, lease) is not None:
                        winners.append(worker)
                except Exception:  # noqa: BLE001 - refusing the lease is keeping the guarantee
                    continue
            assert len(winners) <= 1, (f"[exactly-one-claim-winner] try_claim({claim_id!r}, worker, "
                                       f"lease_seconds={lease!r}): {winners} won it, one after the other")  # fmt: skip

    @guarantee("no-lost-claim")
    def test_released_or_expired_claims_can_be_claimed_again(
        self, xcomsim_env: Any, contract_dag: Any, claim_store: Any
    ) -> None:
        store = open_claims(claim_store)
        stories = {
            "released": [[Claim("released"), Release("released")], [Wait(0.0), Claim("released")]],
            "expired": [[Claim("expired", lease_seconds=0.2), Crash()], [Wait(0.6), Claim("expired")]],
        }
        for name, workload in stories.items():
            history = run_workload(workload, dag=contract_dag, claim_store=store)  # w0 runs first, then w1
            require("no-lost-claim", Observation(history), f"{name}:\n{history.describe()}")
