"""Adversarial scope: the generated forms run, and a backend that checks only the plain forms is caught."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from xcomsim.checks import InvariantViolation
from xcomsim.strategies import BOOKKEEPING_KEY, PullForm, adversarial_keys, pull_forms, push_forms


def test_forms_cover_every_way_to_push_and_pull():
    seen_pulls: set[tuple[str, str]] = set()
    seen_keys: set[str] = set()

    @settings(max_examples=300, database=None, derandomize=True)
    @given(form=pull_forms(), key=adversarial_keys(("a", "b")))
    def draw(form, key):
        seen_pulls.add((form.via, form.task_ids))
        seen_keys.add(key)

    draw()
    assert {via for via, _ in seen_pulls} == {"xcom_pull", "get_one", "get_all", "callback", "template", "xcomarg",
                                                "lazy_sequence"}
    assert {shape for via, shape in seen_pulls} >= {"str", "list", "list-with-own", "generator", "none"}
    assert {"a", "b", BOOKKEEPING_KEY} <= seen_keys and any("/../" in k or "?" in k for k in seen_keys)
    assert any(not k.isascii() for k in seen_keys)
    assert str(PullForm(via="xcom_pull", task_ids="generator", map_indexes=None, other_dag=True)) == (
        "xcom_pull task_ids=generator map_indexes=None another dag_id")
    pushes: set[str] = set()

    @settings(max_examples=50, database=None, derandomize=True)
    @given(form=push_forms())
    def draw_push(form):
        pushes.add(form.via)

    draw_push()
    assert pushes == {"xcom_push", "set", "set-impersonating"}


def _run(test_name, env):
    from xcomsim.conformance import xcomsim_policy_scoping
    from xcomsim.conformance.adversarial_scope import AdversarialScopeContract

    getattr(AdversarialScopeContract(), test_name)(env, xcomsim_policy_scoping())


@pytest.mark.xcomsim(backend="xcomsim.mutants.scope.PullScopeBypassXCom")
def test_a_backend_scoping_only_plain_pulls_is_caught(xcomsim_env):
    with pytest.raises(InvariantViolation, match=r"\[pull-scope\] allowed although the policy does not") as caught:
        _run("test_generated_pull_forms_are_scoped", xcomsim_env)
    assert "form: " in str(caught.value)  # the drawn form is part of the story


@pytest.mark.xcomsim(backend="xcomsim.mutants.scope.PushScopeIgnoredXCom")
def test_a_backend_ignoring_push_scope_is_caught(xcomsim_env):
    with pytest.raises(InvariantViolation, match=r"\[push-scope\] allowed although the policy does not"):
        _run("test_generated_push_forms_are_scoped", xcomsim_env)


def test_a_failure_inside_airflow_before_the_backend_is_not_judged(xcomsim_env):
    """A key Airflow's in-process Execution API cannot carry ('éa' in an unquoted URL path) fails in Airflow
    before the backend runs: nothing was read, so neither a refusal nor a leak is judged. The same key pulled
    through the backend's own code path is judged (and the reference's refusal names caller, source and key)."""
    from xcomsim.conformance import xcomsim_policy_scoping
    from xcomsim.conformance.adversarial_scope import _Scope
    from xcomsim.task_context import thread_local_task_state

    with thread_local_task_state():
        scope = _Scope(xcomsim_policy_scoping(), xcomsim_env.backend)
        assert scope.pull("producer", "producer", "éa", PullForm(via="lazy_sequence")) is None
        judged = scope.pull("producer", "producer", "éa", PullForm(via="xcom_pull"))
    assert judged is not None and not judged.allowed
    assert judged.error is not None and "éa" in judged.error and "producer" in judged.error


def test_the_backends_own_code_is_told_from_airflows():
    from xcomsim.backend import ExclusiveXCom
    from xcomsim.conformance.adversarial_scope import _packages, _passed_through
    from xcomsim.mutants.scope import PullScopeBypassXCom

    assert _packages(PullScopeBypassXCom) == ("xcomsim.backend", "xcomsim.mutants")
    try:
        ExclusiveXCom.deserialize_value(object())  # raises inside the backend's own module
    except Exception as exc:  # noqa: BLE001
        inside = exc
    try:
        b"\xe9".decode()
    except UnicodeDecodeError as exc:
        outside = exc
    assert _passed_through(inside, _packages(ExclusiveXCom)) and not _passed_through(outside, _packages(ExclusiveXCom))
    try:
        raise RuntimeError("wrapped") from inside
    except RuntimeError as exc:
        assert _passed_through(exc, _packages(ExclusiveXCom))  # a cause raised by the backend counts
