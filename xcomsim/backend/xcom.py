"""ExclusiveXCom: the reference XCom backend that keeps the exclusive-XCom guarantees.

* push-once: an XCom coordinate is written at most once; the guard is an atomic
  create-if-absent in the object store, taken before anything is written;
* push- and pull-scope: the DAG's ``XComPolicy`` decides, the caller being the
  task that is running (from Airflow's task context), never an argument;
* offload: values whose serialised size is at or above the threshold live in S3
  or Redis at one fixed name per coordinate; the ``xcom`` row holds a reference.

The class is composed of one part per concern: who is calling
(``caller``), the push path and its guard (``push``, ``guard``), the pull path
(``pull``) and deletion (``purge``). Configure with ``[core] xcom_backend =
xcomsim.backend.ExclusiveXCom`` and the ``[xcomsim]`` section (see
``xcomsim.backend.config``).
"""

from __future__ import annotations

from airflow.sdk.bases.xcom import BaseXCom

from xcomsim.backend.caller import CallerChecks
from xcomsim.backend.pull import PullPath
from xcomsim.backend.purge import Purge
from xcomsim.backend.push import PushPath


class ExclusiveXCom(PushPath, PullPath, Purge, CallerChecks, BaseXCom):
    """See the module docstring; every refusal raises before anything is written."""

    # What it claims, for the conformance kit (xcomsim.conformance.capabilities). Reruns in the
    # kit push again, so its runs use the documented escape from push-once across tries (the kit's
    # push-once and retry tests make their own strict policies).
    xcomsim_contract = {
        "offload": ({"xcomsim.xcom_objectstorage_threshold": 1000}, 1000),
        "scoping": "xcomsim-policy",
        "claim_store": "xcomsim.backend.claims:open_claim_store",
        "config": {"xcomsim.retry_replaces": "true"},
        "push_once": True,
        # The retry rule (xcomsim.backend.guard): a retry replaces the value of the try it retries.
        "retry_replaces_failed_try": True,
    }
