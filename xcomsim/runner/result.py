"""What a DAG run left behind: its state, every task instance's outcome, every XCom row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class XComRecord:
    """One row of the ``xcom`` table after the run, and what the backend made of it."""

    task_id: str
    map_index: int
    key: str
    stored: Any
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    error: BaseException | None = None


@dataclass
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    tasks: list[TaskOutcome] = field(default_factory=list)
    xcoms: list[XComRecord] = field(default_factory=list)
    seconds: float = 0.0
    # Runs of other DAGs this run started (TriggerDagRunOperator), run to completion as well.
    triggered: list[DagRunResult] = field(default_factory=list)
    # Wall-clock waits skipped by time travel (sensor reschedules, time-based triggers).
    skipped_seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.state == "success"

    @property
    def task_states(self) -> dict[str, str | None]:
        """``task_id`` (``task_id[i]`` for map index ``i``) -> final state."""
        return {_label(t.task_id, t.map_index): t.state for t in self.tasks}

    def task(self, task_id: str, map_index: int = -1) -> TaskOutcome:
        for outcome in self.tasks:
            if outcome.task_id == task_id and outcome.map_index == map_index:
                return outcome
        raise KeyError(f"no task instance {_label(task_id, map_index)} in run {self.run_id}")

    def error(self, task_id: str, map_index: int = -1) -> BaseException | None:
        return self.task(task_id, map_index).error

    def record(self, task_id: str, key: str = "return_value", map_index: int = -1) -> XComRecord:
        for record in self.xcoms:
            if (record.task_id, record.key, record.map_index) == (task_id, key, map_index):
                return record
        raise KeyError(f"no XCom {key!r} of {_label(task_id, map_index)} in run {self.run_id}")

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The deserialised value, as a downstream task would pull it."""
        record = self.record(task_id, key, map_index)
        if record.error is not None:
            raise ValueError(f"XCom {key!r} of {task_id} could not be deserialised: {record.error}")
        return record.value

    def describe(self) -> str:
        lines = [f"DAG {self.dag_id} run {self.run_id}: {self.state} in {self.seconds:.2f}s"]
        for t in self.tasks:
            err = f"  {type(t.error).__name__}: {t.error}" if t.error else ""
            lines.append(f"  {_label(t.task_id, t.map_index)}: {t.state} (try {t.try_number}){err}")
        for other in self.triggered:
            lines.extend("  " + line for line in other.describe().splitlines())
        return "\n".join(lines)


def _label(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"
