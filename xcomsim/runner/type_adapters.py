"""The task runner's pydantic ``TypeAdapter``s, built once per type instead of once per use.

Airflow's task runner checks every rendered template field of every task instance with
``TypeAdapter(JsonValue)``, building the adapter (its whole core schema) anew each time:
about 0.3 ms, some 30 times in one run of a 10-task DAG, for a validation that then takes
about 1 us. An adapter depends only on its type and validates the same whoever built it
(pydantic-core validators are immutable, so one serves every thread), so the runner gets one
kept per type. Only the name inside ``airflow.sdk.execution_time.task_runner`` is replaced;
pydantic's ``TypeAdapter`` is untouched everywhere else. Remembered are classes (compared by
identity) and ``JsonValue``, the two the runner uses; any other expression is built anew.
"""

from __future__ import annotations

import functools
from typing import Any

_KEPT = 64  # distinct types remembered (the runner uses two)


def install() -> None:
    """Give the task runner remembered adapters (once per process)."""
    from airflow.sdk.execution_time import task_runner
    from pydantic import JsonValue

    if getattr(task_runner.TypeAdapter, "__xcomsim_original__", None) is not None:
        return
    original = task_runner.TypeAdapter

    @functools.lru_cache(maxsize=_KEPT)
    def built(kind: Any) -> Any:
        return original(kind)

    def remembered(kind: Any, *args: Any, **kwargs: Any) -> Any:
        # Only a class or JsonValue itself: type expressions that compare equal may still
        # validate differently (Union[int, float] == Union[float, int]; a forward reference
        # resolves in its caller's scope), and a config or module of its own is built as asked.
        if args or kwargs or not (isinstance(kind, type) or kind is JsonValue):
            return original(kind, *args, **kwargs)
        return built(kind)

    remembered.__xcomsim_original__ = original  # type: ignore[attr-defined]
    task_runner.TypeAdapter = remembered
