"""A 4 MB payload between tasks: S3 holds it, the xcom table holds only a bounded reference."""

from __future__ import annotations

import json


def test_multi_mb_payload_is_offloaded(run_dag, xcomsim_env):
    result = run_dag("s3_offload_pipeline")

    assert result.succeeded, result.describe()
    assert result.xcom("summarise") == {"rows": 40_000, "last": 39_999}
    stored = result.record("produce").stored
    assert isinstance(stored, str) and stored.startswith("xcomsim+s3://")
    assert len(stored) <= 1024
    key = "xcom/" + stored.split("/xcom/", 1)[1].split("?", 1)[0]
    head = xcomsim_env.s3.head_object(Bucket=xcomsim_env.bucket, Key=key)
    assert head["ContentLength"] > 4_000_000
    assert len(result.xcom("produce")) == 40_000
    # Only the reference reached the metadata DB; the small summary stayed inline.
    row_bytes = {(r["task_id"]): len(json.dumps(r["value"])) for r in xcomsim_env.xcom_rows()}
    assert row_bytes["produce"] <= 1026 and row_bytes["summarise"] < 100
