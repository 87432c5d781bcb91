"""What every family of contract tests shares: the guarantee mark, the example budget, task starts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

guarantee = pytest.mark.xcomsim_guarantee
_SUPPRESSED = (HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much)


def examples(**changes: Any) -> settings:
    """The current profile's settings (read when a test runs, not at import) for a property inside a test."""
    current = settings()
    return settings(current, deadline=None, suppress_health_check=[*current.suppress_health_check, *_SUPPRESSED],
                    **changes)  # fmt: skip


class FirstFailure:
    """Counts a property's examples and notes on its failure how many ran before the first one failed.

    ``shrink_budget``: after the first failure, at most this many more examples run for real; later ones
    pass untried unless they are an input that already failed (which fails again, as Hypothesis's final
    replay needs). Shrinking then stops at the smallest failure found within the budget: every example
    of a backend is real I/O, and an unbounded shrink of one costs minutes.
    """

    def __init__(self, shrink_budget: int | None = None) -> None:
        self.examples = 0
        self.first: int | None = None
        self.shrink_budget = shrink_budget
        self._failed: dict[str, BaseException] = {}

    def count(self, test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)
        def counted(*args: Any, **kwargs: Any) -> None:
            self.examples += 1
            spent = self.first is not None and self.shrink_budget is not None and (
                self.examples - self.first > self.shrink_budget)  # fmt: skip
            if spent:
                known = self._failed.get(repr((args, kwargs)))
                if known is None:
                    return
                raise known
            try:
                test(*args, **kwargs)
            except BaseException as exc:
                self.first = self.first or self.examples
                if self.shrink_budget is not None:
                    self._failed[repr((args, kwargs))] = exc
                raise

        return counted

    def run(self, test: Callable[[], None]) -> None:
        try:
            test()
        except BaseException as exc:
            if self.first is not None:
                exc.add_note(f"xcomsim: first failure at example {self.first} of the run")
            raise


def start(dag: Any, task_ids: list[str] | None = None) -> list[Any]:
    """Running task instances of ``dag`` (default: the workload's one task)."""
    from xcomsim.scheduler.workload import WORKLOAD_TASK_ID
    from xcomsim.task_context import start_task_instances

    return start_task_instances(dag, [(t, -1) for t in task_ids or [WORKLOAD_TASK_ID]])


def one_task(dag: Any) -> Any:
    (handle,) = start(dag)
    return handle


def error_text(exc: BaseException | None) -> str | None:
    return None if exc is None else f"{type(exc).__name__}: {exc}"


def record(request: Any, name: str, value: Any) -> None:
    """Hand a finding to the verdict table (read from the test report's ``user_properties``)."""
    request.node.user_properties.append((name, value))
