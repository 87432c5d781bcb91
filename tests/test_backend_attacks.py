"""Attacks on the reference backend through real DAG runs: each is run on the mutant that keeps the hole
(it must lose) and on ExclusiveXCom (it must not).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from xcomsim.backend import XComPolicy, codec
from xcomsim.backend.config import load
from xcomsim.mutants.hardening import HARDENING

REFERENCE = "xcomsim.backend.ExclusiveXCom"
OFFLOAD = {"xcomsim.xcom_objectstorage_threshold": 1000}
SECRET = "s" * 5000  # offloaded


def against(mutant: str, **marker):
    """Parametrise over (the mutant, the reference); the test gets ``hole`` True for the mutant."""
    assert f"xcomsim.mutants.hardening.{mutant}" in HARDENING
    return pytest.mark.parametrize(
        "hole",
        [
            pytest.param(True, marks=pytest.mark.xcomsim(backend=f"xcomsim.mutants.hardening.{mutant}", **marker),
                         id=mutant),
            pytest.param(False, marks=pytest.mark.xcomsim(backend=REFERENCE, **marker), id="ExclusiveXCom"),
        ],
    )  # fmt: skip


def _xcom():
    from airflow.sdk.execution_time.xcom import XCom

    return XCom


def _victim(**_):
    return SECRET


# ------------------------------------------------------------------ purge and pull of a forged reference
def _forged_reference(ti, stolen_task: str) -> str:
    """A reference naming another task's object, as task code could write it in a raw SetXCom."""
    name = codec.object_name(ti.dag_id, ti.run_id, stolen_task, -1, "return_value", attempt=1)  # try 1's object
    return codec.Reference(load().path, name, "0" * 64, 1, "").to_uri()


def _forge_then_fail(ti, **_):
    if ti.try_number == 1:
        _xcom()._set_xcom_in_db(key="k", value=_forged_reference(ti, "victim"), dag_id=ti.dag_id,
                                task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index)  # fmt: skip
        raise RuntimeError("first try fails; the retry's delete purges the forged row")
    return "ok"


with DAG("attack_purge_forged", start_date=datetime(2024, 1, 1), schedule=None) as purge_forged:
    victim = PythonOperator(task_id="victim", python_callable=_victim)
    victim >> PythonOperator(task_id="forger", python_callable=_forge_then_fail, retries=1)

XComPolicy(pushes={"victim": ["return_value"], "forger": ["k", "return_value"]}, retry_replaces=True).attach(
    purge_forged
)


@against("ForeignReferencePurgeXCom", config=OFFLOAD)
def test_retry_purge_of_a_forged_reference_deletes_nothing_foreign(run_dag, hole):
    result = run_dag(purge_forged)

    assert result.task("forger").try_number == 2
    if hole:
        assert "missing" in result.record("victim").error
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("victim") == SECRET


def _copy_victims_row(ti, **_):
    """Copies the victim's stored reference into its own row (a raw GetXCom and SetXCom)."""
    stolen = _xcom()._get_xcom_db_ref(key="return_value", dag_id=ti.dag_id, task_id="victim", run_id=ti.run_id)
    _xcom()._set_xcom_in_db(key="k", value=stolen.value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id)


def _read_copy(ti, **_):
    return len(ti.xcom_pull(task_ids="copier", key="k"))


with DAG("attack_pull_forged", start_date=datetime(2024, 1, 1), schedule=None) as pull_forged:
    victim = PythonOperator(task_id="victim", python_callable=_victim)
    copier = PythonOperator(task_id="copier", python_callable=_copy_victims_row)
    victim >> copier >> PythonOperator(task_id="reader", python_callable=_read_copy)

XComPolicy(
    pushes={"victim": ["return_value"], "copier": ["k"], "reader": ["return_value"]},
    pulls={"reader": {"copier": ["k"]}},
).attach(pull_forged)


@against("ForeignReferencePurgeXCom", config=OFFLOAD)
def test_a_row_naming_another_xcoms_object_is_not_read_as_its_value(run_dag, hole):
    result = run_dag(pull_forged)

    if hole:
        assert result.xcom("reader") == len(SECRET)  # read the victim's value through its own key
    else:
        error = result.error("reader")
        assert type(error).__name__ == "XComStoreError", result.describe()
        assert "not that XCom's own object" in str(error)


# ------------------------------------------------------------------ identity from the running task
def _impersonate(ti, **_):
    _xcom().set("report", "forged by the intruder", dag_id=ti.dag_id, task_id="owner", run_id=ti.run_id)


def _owner(ti, **_):
    ti.xcom_push(key="report", value="the owner's own")


with DAG("attack_impersonation", start_date=datetime(2024, 1, 1), schedule=None) as impersonation:
    PythonOperator(task_id="intruder", python_callable=_impersonate) >> PythonOperator(
        task_id="owner", python_callable=_owner, trigger_rule="all_done"
    )

XComPolicy(pushes={"owner": ["report"]}).attach(impersonation)


@against("TrustedTaskIdXCom")
def test_a_task_cannot_push_as_another_task(run_dag, hole):
    result = run_dag(impersonation)

    if hole:
        assert result.xcom("owner", "report") == "forged by the intruder"
        assert type(result.error("owner")).__name__ == "XComOverwriteError"
    else:
        error = result.error("intruder")
        assert type(error).__name__ == "XComScopeError", result.describe()
        assert "task 'intruder' of DAG 'attack_impersonation'" in str(error) and "not as task 'owner'" in str(error)
        assert result.xcom("owner", "report") == "the owner's own"


# ------------------------------------------------------------------ callbacks run outside the task context
CALLBACK_SAW: list[object] = []


def _pull_in_callback(context):
    try:
        CALLBACK_SAW.append(context["ti"].xcom_pull(task_ids="source", key="secret"))
    except Exception as exc:  # Airflow logs and swallows a callback's error: keep it to look at
        CALLBACK_SAW.append(exc)


def _push_secret(ti, **_):
    ti.xcom_push(key="secret", value="classified")


with DAG("attack_callback_pull", start_date=datetime(2024, 1, 1), schedule=None) as callback_pull:
    PythonOperator(task_id="source", python_callable=_push_secret) >> PythonOperator(
        task_id="watcher", python_callable=lambda: None, on_success_callback=_pull_in_callback
    )

XComPolicy(pushes={"source": ["secret"]}).attach(callback_pull)


@against("CallbackPullXCom")
def test_a_callback_pulls_as_the_task_it_finalises(run_dag, hole):
    CALLBACK_SAW.clear()
    result = run_dag(callback_pull)

    assert result.succeeded, result.describe()
    assert len(CALLBACK_SAW) == 1
    if hole:
        assert CALLBACK_SAW == ["classified"]
    else:
        assert type(CALLBACK_SAW[0]).__name__ == "XComScopeError"
        assert "task 'watcher' may not pull key 'secret' from task 'source'" in str(CALLBACK_SAW[0])


# ------------------------------------------------------------------ run ids and keys in unquoted URLs
def _pull_through_run_id(ti, **_):
    return _xcom().get_one(key="mine", dag_id=ti.dag_id, task_id=ti.task_id, run_id=f"{ti.run_id}/source/secret?")


with DAG("attack_run_id_path", start_date=datetime(2024, 1, 1), schedule=None) as run_id_path:
    PythonOperator(task_id="source", python_callable=_push_secret) >> PythonOperator(
        task_id="reader", python_callable=_pull_through_run_id
    )

XComPolicy(pushes={"source": ["secret"], "reader": ["mine", "return_value"]}).attach(run_id_path)


def _push_up_the_path(ti, **_):
    ti.xcom_push(key="../owner/report", value="written by the intruder")


with DAG("attack_key_path", start_date=datetime(2024, 1, 1), schedule=None) as key_path:  # no policy at all
    PythonOperator(task_id="owner", python_callable=_owner) >> PythonOperator(
        task_id="intruder", python_callable=_push_up_the_path
    )


@against("UnquotedKeyXCom")
def test_a_run_id_with_a_slash_cannot_read_another_tasks_key(run_dag, hole):
    result = run_dag(run_id_path)

    if hole:
        assert result.xcom("reader") == "classified"
    else:
        error = result.error("reader")
        assert type(error).__name__ == "XComValueError", result.describe()
        assert "contains '/' (U+002F)" in str(error) and "run_id" in str(error)


@against("UnquotedKeyXCom")
def test_a_key_with_dot_segments_cannot_overwrite_another_tasks_value(run_dag, hole):
    result = run_dag(key_path)

    if hole:
        assert result.xcom("owner", "report") == "written by the intruder"
    else:
        assert "contains '/'" in str(result.error("intruder")), result.describe()
        assert result.xcom("owner", "report") == "the owner's own"


@pytest.mark.parametrize("key", ["a?b", "a#b", "%2e%2e", "a%2Fb", "..", "nul\x00", "café", "ключ", "k" * 300 + "é"])
def test_url_unsafe_keys_are_refused_by_name_before_any_io(key):
    from xcomsim.backend import ExclusiveXCom, XComValueError

    with pytest.raises(XComValueError) as caught:
        ExclusiveXCom._check_coordinate("d", "manual__2024-01-01T00:00:00+00:00", "t", key)
    assert "XCom key" in str(caught.value)


# ------------------------------------------------------------------ the public serialize_value is a write path
def _push_then_serialize(ti, **_):
    ti.xcom_push(key="report", value=SECRET)
    _xcom().serialize_value("t" * 5000, key="report", dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id,
                            map_index=ti.map_index)  # fmt: skip


with DAG("attack_serialize_value", start_date=datetime(2024, 1, 1), schedule=None) as serialize_attack:
    PythonOperator(task_id="owner", python_callable=_push_then_serialize)

XComPolicy(pushes={"owner": ["report"]}).attach(serialize_attack)


@against("UnguardedSerializeXCom", config=OFFLOAD)
def test_serialize_value_cannot_overwrite_a_committed_value(run_dag, hole):
    result = run_dag(serialize_attack)

    if hole:
        assert "no longer holds the bytes" in result.record("owner", "report").error
    else:
        assert type(result.error("owner")).__name__ == "XComOverwriteError", result.describe()
        assert result.xcom("owner", "report") == SECRET


# ------------------------------------------------------------------ the reply to the row write is lost
@pytest.fixture
def reply_lost_after_commit(monkeypatch):
    """The first SetXCom of key 'report' commits, then its reply is lost (the task sees an error)."""
    from airflow.sdk.execution_time.comms import SetXCom
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms

    real = InProcessSupervisorComms.send
    lost: list[str] = []

    def send(self, msg):
        response = real(self, msg)
        if isinstance(msg, SetXCom) and msg.key == "report" and not lost:
            lost.append(msg.key)
            raise ConnectionResetError("reply to SetXCom lost after the row committed")
        return response

    monkeypatch.setattr(InProcessSupervisorComms, "send", send)
    return lost


def _push_report(ti, **_):
    ti.xcom_push(key="report", value=SECRET)


with DAG("attack_lost_reply", start_date=datetime(2024, 1, 1), schedule=None) as lost_reply:
    PythonOperator(task_id="owner", python_callable=_push_report)

XComPolicy(pushes={"owner": ["report"]}).attach(lost_reply)


@against("UndoAfterCommitXCom", config=OFFLOAD)
def test_a_lost_reply_after_the_row_committed_leaves_no_dangling_reference(run_dag, reply_lost_after_commit, hole):
    result = run_dag(lost_reply)

    assert reply_lost_after_commit == ["report"]
    if hole:
        assert "missing" in result.record("owner", "report").error
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("owner", "report") == SECRET


# ------------------------------------------------------------------ a guard without a row does not outlive its try
# A later try takes over an earlier try's guard at once (its try number fences the earlier one off); a deleted run
# triggered again under its run_id is another run.


LEASE = OFFLOAD


def _push_report_after_the_lease(ti, **_):
    ti.xcom_push(key="report", value=SECRET)


with DAG("attack_outage_guard", start_date=datetime(2024, 1, 1), schedule=None) as outage_guard:
    PythonOperator(task_id="owner", python_callable=_push_report_after_the_lease, retries=1)

XComPolicy(pushes={"owner": ["report"]}).attach(outage_guard)


@against("StaleGuardXCom", config=LEASE)
def test_after_an_outage_while_releasing_the_guard_the_next_try_can_push(run_dag, outage_during_first_push, hole):
    result = run_dag(outage_guard)

    assert outage_during_first_push == ["put", "delete"]
    assert result.task("owner").try_number == 2
    if hole:
        assert type(result.error("owner")).__name__ == "XComOverwriteError"
        assert not any(r.key == "report" for r in result.xcoms)  # blocked, with no value stored
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("owner", "report") == SECRET


@against("StaleGuardXCom", config=OFFLOAD)
def test_a_deleted_run_triggered_again_under_its_run_id_can_push(run_dag, xcomsim_env, monkeypatch, hole):
    from airflow import settings
    from airflow.models.dagrun import DagRun

    # A run triggered with an explicit run id (the REST API's dag_run_id), twice.
    monkeypatch.setattr(DagRun, "generate_run_id", staticmethod(lambda **_: "nightly"))
    first = run_dag(lost_reply)
    assert first.succeeded, first.describe()
    session = settings.Session()
    try:
        for dag_run in session.query(DagRun).filter(DagRun.dag_id == "attack_lost_reply"):
            session.delete(dag_run)  # as the UI and REST API delete a run: rows go, the store is untouched
        session.commit()
    finally:
        session.close()
    assert xcomsim_env.xcom_rows() == []

    again = run_dag(lost_reply)
    assert again.run_id == first.run_id
    if hole:
        assert type(again.error("owner")).__name__ == "XComOverwriteError"
    else:
        assert again.succeeded, again.describe()
        assert again.xcom("owner", "report") == SECRET


@against("StaleGuardXCom", config=LEASE)
def test_a_task_process_left_with_a_guard_and_no_row_does_not_block_its_retry(xcomsim_env, hole):
    """In a real task process the first try's upload and guard release fail; the retry, a new process, pushes."""
    result = xcomsim_env.run_dag("outage_between_guard_and_row", worker_process=True)

    assert result.task("pusher").try_number == 2
    if hole:
        assert result.error("pusher").exc_type == "XComOverwriteError"
    else:
        assert result.succeeded, result.describe()
        assert result.xcom("pusher", "report") == "r" * 5000


# ------------------------------------------------------------------ LazyXComSequence of a mapped source
def _lazy_dag(dag_id: str):
    from airflow.sdk import task

    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def shard(i, **context):
            context["ti"].xcom_push(key="secret", value=f"shard {i} secret")
            return i

        shards = shard.expand(i=[0, 1])
        secrets = shards["secret"]  # captured below, not passed: no declared data dependency

        @task
        def count(values, **context):
            return [len(list(values)), list(secrets.resolve(context))]

        count(shards)
    XComPolicy(pushes={"shard": ["secret", "return_value"], "count": ["return_value"]}).attach(dag)
    return dag


lazy_sequence = _lazy_dag("attack_lazy_sequence")


@against("LazySequencePullXCom")
def test_a_lazy_sequence_of_a_mapped_source_is_checked(run_dag, hole):
    result = run_dag(lazy_sequence)

    if hole:
        assert result.xcom("count") == [2, ["shard 0 secret", "shard 1 secret"]]
    else:
        error = result.error("count")
        assert type(error).__name__ == "XComScopeError", result.describe()
        assert "task 'count' may not pull key 'secret' from task 'shard'" in str(error)


# ------------------------------------------------------------------ skipmixin_key is Airflow's, not a channel
def _smuggle(ti, **_):
    ti.xcom_push(key="skipmixin_key", value={"data": "smuggled 1"})
    ti.xcom_push(key="skipmixin_key", value={"data": "smuggled 2"})


with DAG("attack_skipmixin_channel", start_date=datetime(2024, 1, 1), schedule=None) as skipmixin_channel:
    from airflow.providers.standard.operators.python import BranchPythonOperator

    branch = BranchPythonOperator(task_id="branch", python_callable=lambda: "left")
    branch >> [PythonOperator(task_id="left", python_callable=lambda: None),
               PythonOperator(task_id="right", python_callable=lambda: None)]  # fmt: skip
    PythonOperator(task_id="smuggler", python_callable=_smuggle)

XComPolicy(pushes={"smuggler": []}).attach(skipmixin_channel)


@against("SkipmixinChannelXCom")
def test_skipmixin_key_carries_only_what_branching_writes(run_dag, hole):
    result = run_dag(skipmixin_channel)

    assert result.task_states["left"] == "success" and result.task_states["right"] == "skipped"
    assert result.xcom("branch", "skipmixin_key") == {"followed": ["left"]}
    if hole:
        assert result.xcom("smuggler", "skipmixin_key") == {"data": "smuggled 2"}
    else:
        error = result.error("smuggler")
        assert type(error).__name__ == "XComScopeError", result.describe()
        assert "Airflow's branching bookkeeping" in str(error) and "'smuggler' (PythonOperator)" in str(error)


# ------------------------------------------------------------------ xcomsim gc while pushes are in flight
@pytest.fixture
def sweep_between_upload_and_row(monkeypatch, xcomsim_env):
    """``xcomsim gc`` runs (deleting) at the moment a push's object is uploaded and its row not yet written."""
    from airflow.sdk.execution_time.comms import SetXCom
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms

    real = InProcessSupervisorComms.send
    reports: list[object] = []

    def send(self, msg):
        if isinstance(msg, SetXCom) and msg.key == "report" and not reports:
            path = f"s3://aws_default@{xcomsim_env.bucket}/xcom"
            reports.append(xcomsim_env.backend.sweep(path, xcomsim_env.engine, dry_run=False))
        return real(self, msg)

    monkeypatch.setattr(InProcessSupervisorComms, "send", send)
    return reports


@against("RacingSweepXCom", config=OFFLOAD)
def test_gc_racing_a_push_deletes_no_value_whose_row_lands(run_dag, sweep_between_upload_and_row, hole):
    result = run_dag(lost_reply)

    [report] = sweep_between_upload_and_row
    if hole:
        assert len(report.orphan_values) == 1
        assert "missing" in result.record("owner", "report").error
    else:
        assert report.orphan_values == [] and len(report.young) == 1, report.describe()
        assert result.xcom("owner", "report") == SECRET


@against("SpellingSweepXCom", config=OFFLOAD)
def test_gc_after_the_connection_id_changes_deletes_no_live_value(run_dag, xcomsim_env, monkeypatch, hole):
    import os

    result = run_dag(lost_reply)
    assert result.record("owner", "report").stored.startswith(f"xcomsim+s3://aws_default@{xcomsim_env.bucket}/")
    # The same bucket, now reached through another connection id.
    monkeypatch.setenv("AIRFLOW_CONN_XCOM_STORE", os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    xcomsim_env.set_config({"xcomsim.xcom_objectstorage_path": f"s3://xcom_store@{xcomsim_env.bucket}/xcom"})

    report = xcomsim_env.backend.sweep(f"s3://xcom_store@{xcomsim_env.bucket}/xcom", xcomsim_env.engine,
                                       dry_run=False, grace_seconds=0)  # fmt: skip
    if hole:
        assert len(report.orphan_values) == 1
    else:
        assert report.orphan_values == [] and report.referenced == 1, report.describe()
        from airflow.sdk.execution_time.comms import XComResult

        stored = xcomsim_env.xcom_rows()[0]["value"]
        assert xcomsim_env.backend.deserialize_value(XComResult(key="report", value=stored)) == SECRET


@against("CallbackPullXCom")
def test_a_callback_in_a_real_task_process_pulls_as_its_task(xcomsim_env, hole):
    result = xcomsim_env.run_dag("callback_pull", worker_process=True)

    assert result.succeeded, result.describe()
    seen = result.xcom("watcher", "callback_saw")
    if hole:
        assert seen == "classified"
    else:
        assert seen.startswith("XComScopeError: ") and "task 'watcher' may not pull key 'secret'" in seen


GUARANTEES = {"purge-deletes-only-its-own", "gc-safe-with-inflight-pushes", "retry-can-push", "no-dangling-reference",
              "push-once", "push-scope", "pull-scope", "exactly-one-claim-winner"}  # fmt: skip


def test_every_hardening_mutant_is_a_backend_with_a_named_guarantee_and_an_attack_here():
    from pathlib import Path

    from xcomsim.backend import ExclusiveXCom
    from xcomsim.env.xcom_backend import load_backend

    here = Path(__file__).read_text() + Path(__file__).with_name("test_backend_claims.py").read_text()
    for path, guarantee in HARDENING.items():
        backend = load_backend(path)
        assert issubclass(backend, ExclusiveXCom) and backend is not ExclusiveXCom
        assert guarantee in GUARANTEES, path
        assert backend.__doc__, path
        name = path.rpartition(".")[2]
        attacked = f'against("{name}"' in here or (name == "UncheckedLeaseClaimsXCom" and "unchecked_lease_store" in here)
        assert attacked, f"{path} has no attack test"
