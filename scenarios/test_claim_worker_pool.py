"""Mapped workers racing for claims: every claim owned by exactly one worker, on both stores."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("store", ["sql", "redis"])
def test_every_claim_has_exactly_one_owner(xcomsim_env, store):
    xcomsim_env.set_config({"xcomsim.claims_store": store})
    result = xcomsim_env.run_dag("claim_worker_pool")

    assert result.succeeded, result.describe()
    audit = result.xcom("audit")
    from claim_worker_pool import CLAIMS, WORKERS  # the scenario's own constants

    assert audit["duplicates"] == 0
    assert audit["won"] == sorted(CLAIMS)
    assert set(audit["owners"]) == set(CLAIMS)
    per_worker = [result.xcom("work", map_index=i) for i in range(WORKERS)]
    for claim in CLAIMS:
        winners = [f"worker-{i}" for i, won in enumerate(per_worker) if claim in won]
        assert winners == [audit["owners"][claim]]
