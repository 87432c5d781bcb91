"""The probe inside task processes: the kill point between the guard and the row is really installed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import attrs
import pytest

from xcomsim.soak import probe


@attrs.define
class _Channel:  # slotted, as the task SDK's CommsDecoder is: no instance attribute can be added
    sent: list = attrs.field(factory=list)

    def send(self, msg):  # the task SDK's name: Airflow calls send(msg=...) as often as send(msg)
        self.sent.append(msg)
        return "ok"


@attrs.define
class SetXCom:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    key: str


def test_the_row_write_of_a_planned_coordinate_is_never_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setenv(probe.HISTORY, str(tmp_path))
    monkeypatch.setattr(probe, "_file", None)
    monkeypatch.setattr(probe, "_kill_before_row", set())
    channel = _Channel()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", channel, raising=False)
    kills = []
    monkeypatch.setattr(probe.os, "kill", lambda pid, sig: kills.append(sig))
    monkeypatch.setattr(_Channel, "send", _Channel.send)  # undone after the test
    probe._wrap_row_writes()
    probe.kill_before_row({probe.coordinate("d", "r", "t", 0, "k")})
    assert channel.send(SetXCom("d", "r", "t", 1, "k")) == "ok"  # another coordinate: sent
    assert channel.send(msg=SetXCom("d", "r", "t", 2, "k")) == "ok"
    channel.send(msg=SetXCom("d", "r", "t", 0, "k"))
    assert kills == [signal.SIGKILL]
    events = [json.loads(line) for path in tmp_path.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert [e["op"] for e in events] == ["row", "row", "row", "nemesis"]
    assert events[-1]["coordinate"] == "d/r/t/0/k"


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python 3.12+: fork in a threaded process
def test_a_forked_task_process_is_profiled_on_its_cpu_clock_from_the_fork(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    import os
    import pstats

    monkeypatch.setenv(probe.TASK_PROFILE, str(tmp_path))
    probe.profile_forked_tasks()
    pid = os.fork()
    if pid == 0:  # the task process
        try:
            sum(i * i for i in range(200_000))  # CPU its profile must show
            probe.task_profiled()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    stats = pstats.Stats(str(tmp_path / f"task-{pid}.prof"))
    assert any(func[2] == "<genexpr>" for func in stats.stats), "the child's own work is not in its profile"
    monkeypatch.delenv(probe.TASK_PROFILE)
    pid = os.fork()  # the hook stays registered, but without the variable a fork is not profiled
    if pid == 0:
        try:
            probe.task_profiled()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert not (tmp_path / f"task-{pid}.prof").exists()
