"""The kit's model test: a backend driven beside a dict, the stores checked after every step."""

from __future__ import annotations

import pytest


@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.ReferenceBeforeObjectXCom")
def test_a_row_written_before_its_object_dangles_after_that_step(xcomsim_env, monkeypatch):
    """The invariant looks up only the objects the example's rows name (not a listing of every store):
    a row written before its object, whose upload then fails (a fault) or never runs (a crash), names
    an object that is not there. The mutant writes to the test's bucket: on a shared S3 endpoint each
    test has its own, and a reference into another bucket is a value, not one of the backend's objects."""
    import re

    monkeypatch.setenv("MUTANT_BUCKET", xcomsim_env.bucket)
    from hypothesis import Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    from xcomsim.checks import InvariantViolation
    from xcomsim.conformance.examples import one_task
    from xcomsim.conformance.machine import XComMachine
    from xcomsim.scheduler.workload import workload_dag
    from xcomsim.task_context import thread_local_task_state

    run = settings(max_examples=100, stateful_step_count=10, deadline=None, database=None, derandomize=True,
                   report_multiple_bugs=False, phases=[Phase.generate])  # fmt: skip
    with thread_local_task_state():
        machine = XComMachine.bind(xcomsim_env, one_task(workload_dag("xcomsim_model")), 1000, None, push_once=False)
        with pytest.raises(InvariantViolation, match=rf"no-dangling-reference.*refers to s3://{re.escape(xcomsim_env.bucket)}/mutant/.*"
                                                     r"which does not exist"):  # fmt: skip
            run_state_machine_as_test(machine, settings=run)


class _Drawn:
    """``data`` for a rule called by hand: draws the value given."""

    def __init__(self, value: object) -> None:
        self.value = value

    def draw(self, strategy: object, label: str | None = None) -> object:
        return self.value


def test_a_crashed_push_after_a_failed_one_may_be_the_value_pulled(xcomsim_env):
    """Found by CI's Airflow 3.2.2 cell against the reference backend: a push of {} failed under faults (and
    was undone), then a push of [] whose worker crashed after its row landed. [] is there; the model kept
    only the first uncertain value and called the reference backend broken for it."""
    from xcomsim.conformance.examples import one_task
    from xcomsim.conformance.machine import XComMachine
    from xcomsim.scheduler.workload import workload_dag
    from xcomsim.task_context import thread_local_task_state

    with thread_local_task_state():
        machine = XComMachine.bind(xcomsim_env, one_task(workload_dag("xcomsim_model_candidates")), 1000, None,
                                   push_once=True)()  # fmt: skip
        machine.push_under_faults("k1", _Drawn({}), {1: "redis-drop", 0: "s3-503"})
        machine.push_and_crash("k1", _Drawn([]), 3)
        assert machine.uncertain["k1"] == [{}, []]  # both may have landed
        machine.pull("k1")  # raised InvariantViolation: [round-trip-exact] pulled 'k1' as []; only {} was pushed
        assert machine.model["k1"] == [] and "k1" not in machine.uncertain
        machine.stores_agree()
