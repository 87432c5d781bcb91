"""``xcomsim soak``: a real Airflow deployment under load and faults, judged by the simulation's invariants.

Rooms, one concept each: ``deployment`` (the local Celery deployment, or an
existing one driven by URL; ``services`` and ``processes`` under it),
``workload`` (generated DAG files and triggered runs; ``tasks`` and ``probe``
run inside the deployment's task processes), ``nemesis`` (faults on a seeded
schedule), ``history`` (the recorded operations, gathered and ordered),
``checks`` (the invariants registry and end-state checks, into verdicts),
``report`` (the HTML page's swim lanes), ``run`` (one soak, start to end),
``throughput`` (two backends compared on one deployment) and ``modelcheck``
(the mutant catalogue through the soak).
"""

from __future__ import annotations

from xcomsim.soak.errors import SoakError

__all__ = ["SoakError"]
