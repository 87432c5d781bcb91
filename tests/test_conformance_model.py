"""The kit's model test: a backend driven beside a dict, the stores checked after every step."""

from __future__ import annotations

import pytest


@pytest.mark.usefixtures("fixed_mutant_bucket")
@pytest.mark.xcomsim(backend="xcomsim.mutants.xcom.ReferenceBeforeObjectXCom")
def test_a_row_written_before_its_object_dangles_after_that_step(xcomsim_env, request):
    """The invariant looks up only the objects the example's rows name (not a listing of every store):
    a row written before its object, whose upload then fails (a fault) or never runs (a crash), names
    an object that is not there."""
    from xcomsim.env.s3_store import S3Store

    if not isinstance(xcomsim_env.simulation.s3, S3Store):  # known: see the marker's reason
        request.applymarker(pytest.mark.xfail(strict=False, reason=(
            "on a shared S3 endpoint the model's check reads the missing object and NoSuchKey escapes "
            "instead of being reported as a dangling reference: a harness bug, open")))
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
        with pytest.raises(InvariantViolation, match=r"no-dangling-reference.*refers to s3://xcomsim/mutant/.*"
                                                     r"which does not exist"):  # fmt: skip
            run_state_machine_as_test(machine, settings=run)
