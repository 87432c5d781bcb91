"""Mapped workers race for a set of claims; every claim must end up with exactly one owner.

Each worker walks the claims in its own order (so they collide), keeps what it
wins and returns that list. ``audit`` checks the claim store and the workers'
results agree. The store is the one ``[xcomsim] claims_store`` configures.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from xcomsim.backend import XComPolicy

CLAIMS = [f"partition-{i}" for i in range(12)]
WORKERS = 4

with DAG("claim_worker_pool", start_date=datetime(2023, 1, 1), schedule=None, catchup=False) as dag:

    @task
    def worker_ids():
        return [f"worker-{i}" for i in range(WORKERS)]

    @task
    def work(worker_id):
        from xcomsim.backend.claims import open_claim_store

        store = open_claim_store()
        shift = int(worker_id.rsplit("-", 1)[1])
        order = CLAIMS[shift:] + CLAIMS[:shift]
        return [claim for claim in order if store.try_claim(claim, worker_id, lease_seconds=3600)]

    @task
    def audit(won):
        from xcomsim.backend.claims import open_claim_store

        store = open_claim_store()
        owners = {claim: store.holder(claim) for claim in CLAIMS}
        flat = [claim for claims in won for claim in claims]
        return {"owners": owners, "won": sorted(flat), "duplicates": len(flat) - len(set(flat))}

    audit(work.expand(worker_id=worker_ids()))

XComPolicy(pushes={"worker_ids": ["return_value"], "work": ["return_value"], "audit": ["return_value"]}).attach(dag)
