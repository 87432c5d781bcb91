"""Airflow's own rows and keys, and pulls from code outside any task: each attack through a real DAG run, on the
mutant that keeps the hole (``xcomsim.mutants.airflow_keys``: it must lose) and on ExclusiveXCom (it must not)."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, BaseOperator, BaseOperatorLink
from xcomsim.backend import XComPolicy
from xcomsim.mutants.airflow_keys import AIRFLOW_KEYS

REFERENCE = "xcomsim.backend.ExclusiveXCom"
OFFLOAD = {"xcomsim.xcom_objectstorage_threshold": 1000}
SECRET = "s" * 5000  # offloaded


def against(mutant: str, **marker):
    assert f"xcomsim.mutants.airflow_keys.{mutant}" in AIRFLOW_KEYS
    return pytest.mark.parametrize(
        "hole",
        [
            pytest.param(True, marks=pytest.mark.xcomsim(backend=f"xcomsim.mutants.airflow_keys.{mutant}", **marker),
                         id=mutant),
            pytest.param(False, marks=pytest.mark.xcomsim(backend=REFERENCE, **marker), id="ExclusiveXCom"),
        ],
    )  # fmt: skip


# ------------------------------------------------------------------ TriggerDagRunOperator's own link key, and its retry
class FlakyTrigger(TriggerDagRunOperator):
    """Triggers its DAG (and pushes its link), then fails on its first try: Airflow retries it."""

    def execute(self, context):
        try:
            super().execute(context)
        finally:
            if context["ti"].try_number == 1:
                raise RuntimeError("the first try fails after it triggered")  # noqa: B012


with DAG("keys_target", start_date=datetime(2024, 1, 1), schedule=None) as target:
    PythonOperator(task_id="noop", python_callable=lambda: None)

with DAG("keys_trigger", start_date=datetime(2024, 1, 1), schedule=None) as trigger_dag:
    FlakyTrigger(task_id="trigger", trigger_dag_id="keys_target", retries=1)

XComPolicy(pushes={"trigger": ["trigger_run_id"]}).attach(trigger_dag)  # its link key is Airflow's, not declared


@against("LinkKeysAsDataXCom")
def test_trigger_dag_run_operator_pushes_its_link_and_retries_under_a_policy(run_dag, hole):
    result = run_dag(trigger_dag)

    link = next((r for r in result.xcoms if r.key == "_link_TriggerDagRunLink"), None)
    assert link is not None  # Airflow's finalize writes it past the backend, whatever the backend said
    if hole:
        assert type(result.error("trigger")).__name__ == "XComScopeError", result.describe()
        assert "_link_TriggerDagRunLink" in str(result.error("trigger"))
    else:
        assert result.succeeded, result.describe()
        assert result.task("trigger").try_number == 2
        assert "keys_target" in link.value


# ------------------------------------------------------------------ an extra link whose key is a pushed key
class ReportLink(BaseOperatorLink):
    name = "Report"

    @property
    def xcom_key(self) -> str:
        return "report"  # the same key the task pushes its value under

    def get_link(self, operator, *, ti_key):
        return "https://reports.example.com/latest"


class Reporter(BaseOperator):
    operator_extra_links = (ReportLink(),)

    def execute(self, context):
        context["ti"].xcom_push(key="report", value=SECRET)


with DAG("keys_shadowed", start_date=datetime(2024, 1, 1), schedule=None) as shadowed_dag:  # no policy
    Reporter(task_id="reporter")


@against("LinkKeysAsDataXCom", config=OFFLOAD)
def test_an_extra_link_never_replaces_a_pushed_value(run_dag, xcomsim_env, hole):
    from xcomsim.conformance.stores import store_sizes

    result = run_dag(shadowed_dag)

    row = result.record("reporter", "report")
    objects = [name for name in store_sizes(xcomsim_env) if "/values/" in name]
    if hole:  # the pushed value was committed, then finalize replaced its row inline: its object is an orphan
        assert result.succeeded and row.value == "https://reports.example.com/latest"
        assert len(objects) == 1
    else:
        error = result.error("reporter")
        assert type(error).__name__ == "XComScopeError", result.describe()
        assert "'report'" in str(error) and "extra link" in str(error)
        assert objects == []  # refused before anything was written; finalize's link row is all there is


def test_a_policy_declaring_a_push_under_an_extra_links_key_is_refused_at_parse_time():
    from xcomsim.backend import XComPolicyError

    with pytest.raises(XComPolicyError, match=r"extra link .*'reporter' key 'report'"):
        XComPolicy(pushes={"reporter": ["report"]}).attach(shadowed_dag)


# ------------------------------------------------------------------ pulls from code outside any task
CALLBACK_SAW: list[object] = []


def _dag_failure_callback(context):
    """A DAG-level callback: the scheduler (here run_dag, as dag.test() does) runs it, outside any task."""
    from airflow.sdk.execution_time.xcom import XCom

    try:
        CALLBACK_SAW.append(XCom.get_one(key="secret", dag_id="keys_outside", task_id="source",
                                         run_id=context["run_id"]))  # fmt: skip
    except Exception as exc:
        CALLBACK_SAW.append(exc)


def _fail(**_):
    raise RuntimeError("fails, so the DAG's failure callback runs")


with DAG("keys_outside", start_date=datetime(2024, 1, 1), schedule=None,
         on_failure_callback=_dag_failure_callback) as outside_dag:  # fmt: skip
    PythonOperator(task_id="source", python_callable=lambda ti: ti.xcom_push(key="secret", value="classified")) >> (
        PythonOperator(task_id="failing", python_callable=_fail))

XComPolicy(pushes={"source": ["secret"]}).attach(outside_dag)  # grants the key to nobody


def _as_the_dag_processor(callback, context):
    """Run ``callback`` as Airflow's DAG processor (or triggerer) runs DAG-author code: with a supervisor channel
    that serves XCom messages (both serve GetXCom), and no task instance running."""
    from xcomsim.scheduler.workload import workload_dag
    from xcomsim.task_context import _local, start_task_instances, thread_local_task_state

    with thread_local_task_state():
        (channel,) = start_task_instances(workload_dag("keys_processor_channel"), [("worker", -1)])
        previous, _local.comms = getattr(_local, "comms", None), channel.comms
        try:
            callback(context)
        finally:
            _local.comms = previous


@pytest.mark.parametrize("undeclared", ["allow", "deny"])
@against("UncheckedOutsidePullXCom")
def test_a_dag_level_callback_pulls_nothing_the_policy_grants_to_nobody(run_dag, xcomsim_env, hole, undeclared):
    xcomsim_env.set_config({"xcomsim.undeclared_dags": undeclared})
    result = run_dag(outside_dag)
    assert result.state == "failed"
    CALLBACK_SAW.clear()

    _as_the_dag_processor(_dag_failure_callback, {"run_id": result.run_id, "reason": "task_failure"})

    assert len(CALLBACK_SAW) == 1, CALLBACK_SAW
    if hole:
        assert CALLBACK_SAW == ["classified"]
    else:
        assert type(CALLBACK_SAW[0]).__name__ == "XComScopeError"
        assert "no running task instance" in str(CALLBACK_SAW[0]) and "'secret'" in str(CALLBACK_SAW[0])


def test_every_airflow_keys_mutant_is_a_backend_with_a_named_guarantee_and_an_attack_here():
    from pathlib import Path

    from xcomsim.backend import ExclusiveXCom
    from xcomsim.checks import INVARIANTS
    from xcomsim.env.xcom_backend import load_backend

    here = Path(__file__).read_text()
    for path, guarantee in AIRFLOW_KEYS.items():
        backend = load_backend(path)
        assert issubclass(backend, ExclusiveXCom) and backend is not ExclusiveXCom and backend.__doc__
        assert guarantee in INVARIANTS, path
        assert f'against("{path.rpartition(".")[2]}"' in here, f"{path} has no attack test"
