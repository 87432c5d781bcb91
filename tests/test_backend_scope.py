"""Push- and pull-scope: the policy decides; the caller is the running task; no pull form bypasses it."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow.sdk import DAG, task
from xcomsim.backend import XComPolicy, XComPolicyError, XComScopeError


def _pull_dag(dag_id: str, pull):
    """source pushes 'open' and 'secret' (and is mapped over 2); reader runs ``pull(ti)``."""
    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def source(**context):
            context["ti"].xcom_push(key="open", value="o")
            context["ti"].xcom_push(key="secret", value="s")

        @task
        def mapped_source(i, **context):
            context["ti"].xcom_push(key="secret", value=i)

        @task
        def reader(**context):
            return pull(context["ti"])

        [source(), mapped_source.expand(i=[0, 1])] >> reader()
    XComPolicy(
        pushes={"source": ["open", "secret"], "mapped_source": ["secret"], "reader": ["return_value", "mine"]},
        pulls={"reader": {"source": ["open"]}},
    ).attach(dag)
    return dag


ALLOWED = _pull_dag("pull_allowed", lambda ti: ti.xcom_pull(task_ids="source", key="open"))
FORBIDDEN = {
    "plain": _pull_dag("pull_plain", lambda ti: ti.xcom_pull(task_ids="source", key="secret")),
    "task_ids_none": _pull_dag("pull_none", lambda ti: ti.xcom_pull(key="secret")),
    "task_id_list": _pull_dag("pull_list", lambda ti: ti.xcom_pull(task_ids=["source", "source"], key="secret")),
    "prior_dates": _pull_dag(
        "pull_prior", lambda ti: ti.xcom_pull(task_ids="source", key="secret", include_prior_dates=True)
    ),
    "mapped_source": _pull_dag(
        "pull_mapped", lambda ti: ti.xcom_pull(task_ids="mapped_source", key="secret", map_indexes=[0, 1])
    ),
    "mapped_all": _pull_dag("pull_mapped_all", lambda ti: ti.xcom_pull(task_ids="mapped_source", key="secret")),
}
EXPECTED_SOURCE = {"task_ids_none": "reader", "mapped_source": "mapped_source", "mapped_all": "mapped_source"}


def test_allowed_pull_succeeds(run_dag):
    result = run_dag(ALLOWED)
    assert result.succeeded, result.describe()
    assert result.xcom("reader") == "o"


@pytest.mark.parametrize("form", sorted(FORBIDDEN))
def test_forbidden_pull_is_refused_in_every_form(run_dag, form):
    result = run_dag(FORBIDDEN[form])

    error = result.error("reader")
    assert isinstance(error, XComScopeError), result.describe()
    source = EXPECTED_SOURCE.get(form, "source")
    assert f"task 'reader' may not pull key 'secret' from task '{source}'" in str(error)


with DAG("push_scope", start_date=datetime(2024, 1, 1), schedule=None) as push_scope:

    @task
    def pusher(**context):
        context["ti"].xcom_push(key="declared", value=1)
        context["ti"].xcom_push(key="undeclared", value=2)

    @task
    def returner():
        return "return_value was not declared"

    pusher() >> returner()

XComPolicy(pushes={"pusher": ["declared"], "returner": []}).attach(push_scope)


def test_undeclared_push_and_return_value_are_refused(run_dag):
    result = run_dag(push_scope)

    assert isinstance(result.error("pusher"), XComScopeError)
    assert "DAG 'push_scope', task 'pusher' may not push key 'undeclared'" in str(result.error("pusher"))
    assert result.xcom("pusher", "declared") == 1
    assert [r.key for r in result.xcoms] == ["declared"]


with DAG("returner_ok", start_date=datetime(2024, 1, 1), schedule=None) as returner_ok:

    @task
    def returns():
        return 42

    returns()

XComPolicy(pushes={"returns": ["return_value"]}).attach(returner_ok)


def test_declared_return_value_is_pushed(run_dag):
    assert run_dag(returner_ok).xcom("returns") == 42


with DAG("undeclared_dag", start_date=datetime(2024, 1, 1), schedule=None) as undeclared_dag:

    @task
    def anything():
        return "free"

    anything()


def test_undeclared_dags_allowed_by_default(run_dag):
    assert run_dag(undeclared_dag).xcom("anything") == "free"


@pytest.mark.xcomsim(config={"xcomsim.undeclared_dags": "deny"})
def test_undeclared_dags_denied_when_configured(run_dag):
    result = run_dag(undeclared_dag)
    assert isinstance(result.error("anything"), XComScopeError)
    assert "declares no XCom policy and [xcomsim] undeclared_dags=deny" in str(result.error("anything"))


def test_code_edges_are_implicit_pulls_but_producer_must_declare_the_push():
    with DAG("edge_needs_push", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def produce():
            return 1

        @task
        def consume(x):
            return x

        consume(produce())
    with pytest.raises(XComPolicyError, match="'produce' pushes 'return_value' \\(read by 'consume'\\)"):
        XComPolicy(pushes={"consume": ["return_value"]}).attach(dag)
    bound = XComPolicy(pushes={"produce": ["return_value"], "consume": ["return_value"]}).attach(dag)
    assert bound.may_pull("consume", "edge_needs_push", "produce", "return_value")
    assert not bound.may_pull("consume", "edge_needs_push", "produce", "other")


def test_cross_dag_sources_are_spelled_dag_slash_task():
    with DAG("cross_reader", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def reader():
            return None

        reader()
    bound = XComPolicy(pushes={}, pulls={"reader": {"upstream_dag/export": ["table"]}}).attach(dag)
    assert bound.may_pull("reader", "upstream_dag", "export", "table")
    assert not bound.may_pull("reader", "other_dag", "export", "table")
    assert not bound.may_pull("reader", "cross_reader", "export", "table")


caught = pytest.mark.xfail(strict=True, raises=AssertionError, reason="the mutant must be caught")


@caught
@pytest.mark.xcomsim(backend="xcomsim.mutants.scope.PullScopeBypassXCom")
@pytest.mark.parametrize("form", ["plain", "task_ids_none"])
def test_pull_scope_bypass_is_caught(run_dag, form):
    test_forbidden_pull_is_refused_in_every_form(run_dag, form)


@caught
@pytest.mark.xcomsim(backend="xcomsim.mutants.scope.PushScopeIgnoredXCom")
def test_ignored_push_scope_is_caught(run_dag):
    test_undeclared_push_and_return_value_are_refused(run_dag)
