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
    assert {push_forms().example().via for _ in range(30)} <= {"xcom_push", "set", "set-impersonating"}


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
