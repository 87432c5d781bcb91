"""Running real DAGs to completion in the harness's environment, with a faithful result.

``run_dag`` drives one DAG run (and the runs it starts) through Airflow's own
scheduler and task-runner code; see ``dag_run`` for how it differs from
``dag.test()``, ``clock`` for time limits and time travel, ``store`` for which DAGs
are put in the metadata DB.
"""

from xcomsim.runner.dag_run import create_dag_run, read_xcoms, run_dag
from xcomsim.runner.result import DagRunResult, TaskOutcome, XComRecord
from xcomsim.runner.store import BUNDLE_NAME
from xcomsim.runner.tasks import TaskProcessError

__all__ = [
    "BUNDLE_NAME",
    "DagRunResult",
    "TaskOutcome",
    "TaskProcessError",
    "XComRecord",
    "create_dag_run",
    "read_xcoms",
    "run_dag",
]
