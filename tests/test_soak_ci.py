"""The short CI soak: one seed on a real Celery deployment, the reference keeps everything, a mutant is caught.

Selected with ``-m soak`` (the real-services tier of ``.ci/run``); needs the ``soak`` extra and the Debian
packages ``postgresql``, ``redis-server`` and ``faketime``. About six minutes on two cores; it prints its time.
"""

from __future__ import annotations

import time

import pytest

from xcomsim.soak import modelcheck
from xcomsim.soak.run import Options

SEED = 3
MUTANT = "xcomsim.mutants.xcom.OverwriteAllowedXCom"  # push-once: a retry replaces the value its first try committed
FAULTS = frozenset({"kill", "pause", "restart"})  # skew joins once claims judge leases on the database's clock


@pytest.mark.soak
def test_a_short_soak_keeps_every_guarantee_of_the_reference_and_catches_a_mutant():
    began = time.monotonic()
    lines: list[str] = []
    options = Options(minutes=1.0, seed=SEED, faults=FAULTS, runs_in_flight=6)
    reference, mutant = modelcheck.model_check([modelcheck.REFERENCE, MUTANT], options, lines.append, drain=60.0)
    took = time.monotonic() - began
    print(f"\nxcomsim CI soak: {took:.0f}s (seed {SEED}, faults {','.join(sorted(FAULTS))})")
    print(modelcheck.table([reference, mutant]))
    assert reference.broken == [], reference.verdicts + "\n" + "\n".join(lines)
    judged = {"push-once", "round-trip-exact", "push-scope", "pull-scope", "exactly-one-claim-winner", "no-lost-claim",
              "offload-threshold", "purge-leaves-no-orphan", "no-dangling-reference"}  # fmt: skip
    assert judged <= set(reference.kept), reference.verdicts  # judged on a history, not "not run"
    assert "faults injected: 0" not in reference.verdicts
    assert mutant.caught, mutant.verdicts + "\n" + "\n".join(lines)
