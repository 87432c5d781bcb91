"""Scoping: a task pushes only its declared keys and pulls only what its policy allows from each source."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from xcomsim.checks import Observation, ScopeAttempt, require
from xcomsim.conformance.examples import error_text, guarantee, start

_fresh = itertools.count()


@dataclass(frozen=True)
class ScopeSetup:
    """A DAG whose backend-side scoping allows exactly ``pushes`` (task -> keys) and ``pulls`` (caller -> source -> keys)."""

    dag: Any
    pushes: Mapping[str, set[str]]
    pulls: Mapping[str, Mapping[str, set[str]]]
    keys: tuple[str, ...] = ("a", "b", "c")


def xcomsim_policy_scoping() -> ScopeSetup:
    """Three tasks under an ``XComPolicy``: the setup for backends that enforce xcomsim's policies."""
    from airflow.sdk import DAG, task

    from xcomsim.backend import XComPolicy

    pushes = {"producer": {"a", "b"}, "consumer": {"c"}, "outsider": set()}
    pulls = {"consumer": {"producer": {"a"}}, "outsider": {}}
    with DAG(f"xcomsim_contract_scope_{next(_fresh)}", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        for name in pushes:
            task(task_id=name)(lambda: None)()
    XComPolicy(pushes={t: sorted(k) for t, k in pushes.items() if k}, pulls=pulls).attach(dag)
    return ScopeSetup(dag, pushes, pulls)



class ScopeTests:
    def _scope_attempts(self, scoping: ScopeSetup | None, kind: str) -> list[ScopeAttempt]:
        if scoping is None:
            pytest.skip("not claimed: override the 'scoping' fixture, or declare xcomsim_contract['scoping']")
        from xcomsim.task_context import thread_local_task_state

        attempts = []
        tasks = list(scoping.pushes)
        with thread_local_task_state():
            handles = dict(zip(tasks, start(scoping.dag, tasks)))
            for caller in tasks:  # every task tries every key; producers first, so pulls find values
                for key in scoping.keys:
                    raised = None
                    try:
                        with handles[caller].active() as ti:
                            ti.xcom_push(key=key, value=f"{caller}:{key}")
                    except Exception as exc:  # noqa: BLE001 - judged by the invariant
                        raised = exc
                    attempts.append(ScopeAttempt("push", caller, caller, key, key in scoping.pushes[caller],
                                                 error_text(raised)))  # fmt: skip
            for caller in tasks if kind == "pull" else ():  # pulls need the pushes above, not the reverse
                for source in tasks:
                    if source == caller:
                        continue
                    allowed_keys = scoping.pulls.get(caller, {}).get(source, set())
                    for key in scoping.keys:
                        for how in ({}, {"map_indexes": -1}):  # all map indexes (get_all), and one (get_one)
                            raised = None
                            try:
                                with handles[caller].active() as ti:
                                    ti.xcom_pull(task_ids=source, key=key, **how)
                            except Exception as exc:  # noqa: BLE001 - judged by the invariant
                                raised = exc
                            attempts.append(ScopeAttempt("pull", caller, source, key, key in allowed_keys,
                                                         error_text(raised)))  # fmt: skip
        return [a for a in attempts if a.kind == kind]

    @guarantee("push-scope")
    def test_tasks_push_only_declared_keys(self, xcomsim_env: Any, scoping: ScopeSetup | None) -> None:
        attempts = self._scope_attempts(scoping, "push")
        require("push-scope", Observation(scope_attempts=attempts))

    @guarantee("pull-scope")
    def test_tasks_pull_only_allowed_keys(self, xcomsim_env: Any, scoping: ScopeSetup | None) -> None:
        attempts = self._scope_attempts(scoping, "pull")
        require("pull-scope", Observation(scope_attempts=attempts))
