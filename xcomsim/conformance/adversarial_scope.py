"""Adversarial scope: a test mixin that draws the push and pull forms instead of trying two fixed ones.

When a backend claims scoping (the kit's ``scoping`` fixture), Hypothesis draws
a caller, a source, a key (the scope's keys, the same keys bent by ``/ ? # %
..`` and non-Latin text, or ``skipmixin_key``) and a form (see
``xcomsim.strategies.pull_forms``/``push_forms``): lists, generators and
``None`` as ``task_ids``, ``map_indexes`` variants, ``include_prior_dates``,
another ``dag_id``, odd run ids (an allowed pull from one is not judged: the
task SDK's unquoted URLs fail there in Airflow itself), ``XCom.get_one``/``get_all`` called directly,
a pull from a callback (which runs outside the task context), a Jinja template,
``XComArg.resolve``, a ``LazyXComSequence`` read item by item, and
``XCom.set`` naming another task. Each attempt is
judged by the same invariants as the fixed ones (``push-scope``,
``pull-scope``): what the policy forbids must raise and name caller, source and
key; what it allows must work. Compose it with the kit::

    class TestMyXCom(XComBackendContract, AdversarialScopeContract):
        pass
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from xcomsim.checks import Observation, ScopeAttempt, require
from xcomsim.strategies import PULL_VIAS, PUSH_VIAS, PullForm, PushForm, adversarial_keys, pull_forms, push_forms
from xcomsim.strategies import BOOKKEEPING_KEY

guarantee = pytest.mark.xcomsim_guarantee
_EXAMPLES = settings(deadline=None, report_multiple_bugs=False,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_NOT_CLAIMED = "not claimed: override the 'scoping' fixture, or declare xcomsim_contract['scoping']"


def _error(exc: BaseException | None) -> str | None:
    return None if exc is None else f"{type(exc).__name__}: {exc}"


def may_pull(setup: Any, caller: str, source: str, key: str) -> bool:
    """The setup's policy: a task reads back what it may push itself (and Airflow's bookkeeping of its own),
    and what its pulls list."""
    if source == caller and (key in setup.pushes.get(caller, set()) or key == BOOKKEEPING_KEY):
        return True
    return key in setup.pulls.get(caller, {}).get(source, set())


@contextlib.contextmanager
def _outside_task_context() -> Iterator[None]:
    """As a callback runs: the task's channel to its supervisor is there, its context is not."""
    from airflow.sdk.definitions._internal import contextmanager as ctx_module

    stack = ctx_module._CURRENT_CONTEXT
    saved = [stack.pop() for _ in range(len(stack))]
    try:
        yield
    finally:
        for item in reversed(saved):
            stack.append(item)


def _packages(backend: type) -> tuple[str, ...]:
    """Where a backend's own code lives: the package of each class it is made of (a module itself when it is
    top-level), Airflow's ``BaseXCom`` and ``object`` aside."""
    modules = {c.__module__ for c in backend.__mro__} - {"builtins"}
    modules = {m for m in modules if not m.startswith(("airflow.sdk.", "airflow.models."))}
    return tuple(sorted({m.rsplit(".", 1)[0] if "." in m else m for m in modules}))


def _passed_through(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether any frame of the error (or of its causes) ran the backend's code: the backend saw the request."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            name = tb.tb_frame.f_globals.get("__name__", "")
            if any(name == p or name.startswith(p + ".") for p in packages):
                return True
            tb = tb.tb_next
        pending += [error.__cause__, error.__context__]
    return False


def _bookkeeping(key: str, value: Any) -> bool:
    """Airflow's own use of its bookkeeping key: ``{"followed"|"skipped": [task ids]}`` (branching)."""
    return (key == BOOKKEEPING_KEY and isinstance(value, dict) and len(value) == 1
            and set(value) <= {"followed", "skipped"} and all(isinstance(t, str) for t in next(iter(value.values()))))  # fmt: skip


class _Scope:
    """Started task instances of a scope setup, each allowed key pushed once by its task."""

    def __init__(self, setup: Any, backend: type):
        from xcomsim.task_context import start_task_instances

        self.setup = setup
        self.packages = _packages(backend)
        self.tasks = list(setup.pushes)
        self.handles = dict(zip(self.tasks, start_task_instances(setup.dag, [(t, -1) for t in self.tasks])))
        for task, keys in setup.pushes.items():
            with self.handles[task].active() as ti:
                for key in sorted(keys):
                    ti.xcom_push(key=key, value=f"{task}:{key}")

    def pull(self, caller: str, source: str, key: str, form: PullForm) -> ScopeAttempt | None:
        """The attempt, judged; None when only Airflow could fail it (an allowed pull from an odd run id:
        the task SDK puts run ids in Execution API URLs unquoted, so ``/`` or ``é`` fail in Airflow itself),
        or when an allowed pull from a callback is refused: outside the task context the caller may be
        unknowable, and refusing an unknown caller is right (letting a forbidden one through never is)."""
        handle = self.handles[caller]
        sources = {"str": [source], "list": [source], "list-with-own": [caller, source], "generator": [source],
                   "none": [caller]}[form.task_ids if form.via == "xcom_pull" else "str"]  # fmt: skip
        other_dag = form.other_dag and form.via not in ("xcomarg", "lazy_sequence")  # these read their own DAG
        allowed = not other_dag and all(may_pull(self.setup, caller, s, key) for s in sources)
        # The source a refusal must name: the first one refused (in another DAG, every one is).
        judged = sources[0] if other_dag else next((s for s in sources if not may_pull(self.setup, caller, s, key)),
                                                   sources[-1])
        raised, got = None, None
        try:
            with handle.active() as ti:
                got = self._pull(ti, handle, source, key, form)
        except Exception as exc:  # noqa: BLE001 - judged by the invariant
            raised = exc
        if form.via == "lazy_sequence" and raised is None and got == []:
            return None  # the source stored nothing under the key: nothing was read, nothing to judge
        reached = raised is not None and _passed_through(raised, self.packages)  # the backend saw the attempt
        if not allowed and raised is not None and not reached:
            # Airflow failed the request before the backend saw it (the task SDK's unquoted URLs: a key
            # with "/" or "é" breaks its Execution API call or its in-process transport): nothing was read.
            return None
        if allowed and raised is not None and (form.run_id_suffix is not None or form.via == "callback"):
            return None
        if raised is not None and form.run_id_suffix is not None:
            # An odd run id may be refused at whichever source is checked first: it names that one.
            judged = next((s for s in sources if s in str(raised)), judged)
        stored = any(key in self.setup.pushes.get(s, set()) for s in sources)
        if allowed and raised is not None and not stored and not reached:
            return None  # Airflow's own "not found" (XComArg.resolve of a key nobody pushed): not a refusal
        return ScopeAttempt("pull", caller, judged, key, allowed, _error(raised), caller_known=form.via != "callback")

    def _pull(self, ti: Any, handle: Any, source: str, key: str, form: PullForm) -> Any:
        from airflow.sdk.execution_time.xcom import XCom

        dag_id = f"{ti.dag_id}_other" if form.other_dag else ti.dag_id
        run_id = ti.run_id if form.run_id_suffix is None else f"{ti.run_id}{form.run_id_suffix}"
        if form.via == "get_one":
            return XCom.get_one(key=key, dag_id=dag_id, task_id=source, run_id=run_id, map_index=-1,
                                include_prior_dates=form.include_prior_dates)  # fmt: skip
        if form.via == "get_all":
            return XCom.get_all(key=key, dag_id=dag_id, task_id=source, run_id=run_id,
                                include_prior_dates=form.include_prior_dates)  # fmt: skip
        if form.via == "callback":
            with _outside_task_context():
                return ti.xcom_pull(task_ids=source, dag_id=dag_id, key=key, run_id=run_id,
                                    include_prior_dates=form.include_prior_dates)  # fmt: skip
        if form.via == "template":
            template = "{{ ti.xcom_pull(task_ids=source, dag_id=dag_id, key=key, run_id=run_id) }}"
            context = {**handle.context, "source": source, "dag_id": dag_id, "key": key, "run_id": run_id}
            return ti.task.render_template(template, context)
        if form.via in ("xcomarg", "lazy_sequence"):
            from airflow.sdk.definitions.xcom_arg import PlainXComArg

            arg = PlainXComArg(self.setup.dag.task_dict[source], key)
            if form.via == "xcomarg":
                return arg.resolve(handle.context)
            from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence

            return list(LazyXComSequence(xcom_arg=arg, ti=ti))  # read item by item, as a mapped source's pull is
        task_ids: Any = {"str": source, "list": [source], "list-with-own": [ti.task_id, source],
                         "generator": (t for t in [source]), "none": None}[form.task_ids]  # fmt: skip
        how = {} if form.map_indexes == "omit" else {"map_indexes": form.map_indexes}
        return ti.xcom_pull(task_ids=task_ids, dag_id=dag_id, key=key, run_id=run_id,
                            include_prior_dates=form.include_prior_dates, **how)  # fmt: skip

    def traverse(self, caller: str, source: str, key: str) -> ScopeAttempt | None:
        """The unquoted-URL read: ``caller`` pulls a key of its own with a run id ending in ``/{source}/{key}?``.

        The task SDK puts run ids into Execution API URLs unquoted, so unless the backend refuses such a
        run id the request lands on ``source``'s ``key`` in the real run. A refusal must name the caller
        and its key; getting the victim's value back is a forbidden read; anything else is not judged.
        """
        own = min(self.setup.pushes.get(caller) or {None})  # type: ignore[type-var]
        if own is None:
            return None
        raised, got = None, None
        try:
            with self.handles[caller].active() as ti:
                got = ti.xcom_pull(task_ids=caller, key=own, run_id=f"{ti.run_id}/{source}/{key}?")
        except Exception as exc:  # noqa: BLE001 - judged by the invariant
            raised = exc
        if raised is not None:
            if not _passed_through(raised, self.packages):
                return None  # Airflow's own failure: nothing was read
            return ScopeAttempt("pull", caller, caller, own, False, _error(raised))
        if got == f"{source}:{key}":
            return ScopeAttempt("pull", caller, source, key, False, None)
        return None

    def push(self, caller: str, key: str, form: PushForm, value: Any) -> ScopeAttempt | None:
        """A push the policy forbids, in a new DAG run (one wrongly let through must not meet push-once on replay).

        Allowed pushes are the kit's own test.
        """
        from airflow.sdk.execution_time.xcom import XCom

        from xcomsim.task_context import start_task_instances

        impersonated = next((t for t in self.tasks if t != caller and key in self.setup.pushes[t]),
                            next(t for t in self.tasks if t != caller))  # fmt: skip
        if form.via != "set-impersonating" and (key in self.setup.pushes[caller] or _bookkeeping(key, value)):
            return None
        raised = None
        (handle,) = start_task_instances(self.setup.dag, [(caller, -1)])
        try:
            with handle.active() as ti:
                if form.via == "xcom_push":
                    ti.xcom_push(key=key, value=value)
                else:
                    task_id = impersonated if form.via == "set-impersonating" else ti.task_id
                    XCom.set(key, value, dag_id=ti.dag_id, task_id=task_id, run_id=ti.run_id, map_index=-1)
        except Exception as exc:  # noqa: BLE001 - judged by the invariant
            raised = exc
        return ScopeAttempt("push", caller, caller, key, False, _error(raised))


def _judge(guarantee_name: str, attempt: ScopeAttempt | None, form: Any, drawn: bool = True) -> None:
    """Hold one attempt to its scope invariant (None: nothing the backend could be judged on)."""
    if attempt is None:
        return
    if drawn:
        note(f"{form}: {attempt}")
    require(guarantee_name, Observation(scope_attempts=[attempt]),
            f"form: {form}" + ("" if drawn else " (a directed case, tried before the drawn ones)"))


def _forbidden_reads(setup: Any) -> Iterator[tuple[str, str, str]]:
    """Each (caller, source, key) the policy forbids although the source stores the key: reads that must fail."""
    for source in sorted(setup.pushes):
        for key in sorted(setup.pushes[source]):
            for caller in sorted(setup.pushes):
                if not may_pull(setup, caller, source, key):
                    yield caller, source, key


def _traversals(setup: Any) -> list[tuple[str, str, str]]:
    """One forbidden read for the unquoted-URL attempt: its caller must store a key of its own to name."""
    found = next((r for r in _forbidden_reads(setup) if r[0] != r[1] and setup.pushes[r[0]]), None)
    return [found] if found else []


def _directed_pulls() -> list[PullForm]:
    """Each form once on the plainest forbidden read, so no form is left to the draw (a hundred examples
    over seven forms, five task-id shapes and bent keys can miss the one a backend forgot)."""
    return [PullForm(via=via) for via in PULL_VIAS] + [PullForm(task_ids=shape) for shape in ("list", "list-with-own",
                                                                                                "generator")]


class AdversarialScopeContract:
    """Tests only. Uses the kit's ``xcomsim_env`` and ``scoping`` fixtures."""

    @guarantee("pull-scope")
    def test_generated_pull_forms_are_scoped(self, xcomsim_env: Any, scoping: Any) -> None:
        if scoping is None:
            pytest.skip(_NOT_CLAIMED)
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            scope = _Scope(scoping, xcomsim_env.backend)
            forbidden = next(_forbidden_reads(scoping), None)
            for form in _directed_pulls() if forbidden else []:
                _judge("pull-scope", scope.pull(*forbidden, form), form, drawn=False)
            for caller, source, key in _traversals(scoping):
                _judge("pull-scope", scope.traverse(caller, source, key), f"run_id+'/{source}/{key}?'", drawn=False)
            tasks = st.sampled_from(scope.tasks)

            @_EXAMPLES
            @given(caller=tasks, source=tasks, key=adversarial_keys(scoping.keys), form=pull_forms())
            def pull(caller: str, source: str, key: str, form: PullForm) -> None:
                _judge("pull-scope", scope.pull(caller, source, key, form), form)

            pull()

    @guarantee("push-scope")
    def test_generated_push_forms_are_scoped(self, xcomsim_env: Any, scoping: Any) -> None:
        if scoping is None:
            pytest.skip(_NOT_CLAIMED)
        from xcomsim.task_context import thread_local_task_state

        with thread_local_task_state():
            scope = _Scope(scoping, xcomsim_env.backend)
            forbidden = next(_forbidden_reads(scoping), None)
            for form in [PushForm(via=via) for via in PUSH_VIAS] if forbidden else []:
                caller, source, key = forbidden  # the caller pushing a key only the source may push
                _judge("push-scope", scope.push(caller, key, form, "data"), form, drawn=False)

            @_EXAMPLES
            @given(caller=st.sampled_from(scope.tasks), key=adversarial_keys(scoping.keys), form=push_forms(),
                   value=st.sampled_from(["data", {"followed": ["x"]}, {"exfiltrated": "secret"}]))  # fmt: skip
            def push(caller: str, key: str, form: PushForm, value: Any) -> None:
                _judge("push-scope", scope.push(caller, key, form, value), form)

            push()


__all__ = ["AdversarialScopeContract", "may_pull"]
