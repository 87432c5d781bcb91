"""The nemesis: faults on the seed's schedule, injected without ever holding the soak's loop."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

from xcomsim.soak import nemesis
from xcomsim.soak.nemesis import Fault, Nemesis, Schedule


def _nemesis(tmp_path: Path, *faults: Fault) -> Nemesis:
    deployment = SimpleNamespace(history_dir=tmp_path, skewed={}, soak_id="soak-test")
    return Nemesis(deployment, Schedule(list(faults)), seed=0)


def test_a_kill_that_finds_no_push_waits_a_second_past_the_current_tick_and_is_dropped_after_a_minute(tmp_path: Path):
    chaos = _nemesis(tmp_path, Fault(10.0, "kill"))
    began = time.monotonic()
    chaos.tick(40.0)  # the loop ran late: the kill is 30 s overdue and nothing is pushing
    assert time.monotonic() - began < 1  # one look, not a retry per second of lateness
    assert [f.at for f in chaos.pending] == [41.0]
    for elapsed in range(41, 80):
        chaos.tick(float(elapsed))
    assert chaos.pending == [] and [f.kind for f in chaos.dropped] == ["kill"]
    assert chaos.events == []


def test_a_kill_strikes_a_live_process_whose_last_event_begins_a_push(tmp_path: Path):
    victim = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        for pid, op in ((victim.pid, "push"), (dead.pid, "push"), (os.getpid(), "pull")):
            event = {"op": op, "phase": "begin", "pid": pid, "key": "small", "task_id": "pushers", "map_index": 0,
                     "run_id": "soak_00001"}  # fmt: skip
            (tmp_path / f"worker1-{pid}.jsonl").write_text(json.dumps(event) + "\n")
        chaos = _nemesis(tmp_path, Fault(1.0, "kill"))
        chaos.tick(1.0)
        assert victim.wait(timeout=10) == -9
        assert [(e["fault"], e["target"]) for e in chaos.events] == [("kill", f"pid {victim.pid}")]
        assert "push small of pushers[0] soak_00001" in chaos.events[0]["during"]
    finally:
        victim.kill()


def test_the_schedule_holds_every_chosen_kind_and_is_the_seeds():
    workers = ["worker1", "worker2"]
    schedule = Schedule.draw(3, set(nemesis.KINDS), 180, workers)
    kinds = {f.kind for f in schedule.faults}
    assert kinds == {"kill", "pause", "restart-redis", "restart-s3", "drop-db"}
    assert all(18 <= f.at <= 18 + 0.7 * 180 for f in schedule.faults)
    assert Schedule.draw(3, set(nemesis.KINDS), 180, workers) == schedule
    assert Schedule.draw(4, set(nemesis.KINDS), 180, workers) != schedule


def test_a_skewed_process_sees_the_offset_and_can_sleep():
    """A skewed worker's task sleeps between its pushes; under libfaketime that once failed with EINVAL."""
    import shutil
    import sys

    import pytest

    from xcomsim.soak import services

    if shutil.which("faketime") is None:
        pytest.skip("no faketime on this machine (Debian: apt-get install faketime)")
    code = "import time; a = time.time(); time.sleep(0.05); print(round(a))"
    for offset in (600, -300):
        out = subprocess.run(services.skewed([sys.executable, "-c", code], offset), capture_output=True, text=True,
                             timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("FAKETIME")})  # fmt: skip
        assert out.returncode == 0, out.stderr[-500:]
        assert abs(int(out.stdout) - time.time() - offset) < 30


def test_an_api_that_does_not_answer_is_tried_again_then_named_in_one_line():
    import socket

    import pytest

    from xcomsim.soak import SoakError
    from xcomsim.soak.deployment import ApiClient

    with socket.socket() as mute:  # accepts connections (the backlog) and never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        client = ApiClient(f"http://127.0.0.1:{mute.getsockname()[1]}", timeout=0.2)
        client._token = "t"
        began = time.monotonic()
        with pytest.raises(SoakError, match=r"Airflow API GET dags: no answer after 2 attempts: ReadTimeout"):
            client.request("GET", "dags", attempts=2)
        assert time.monotonic() - began < 10
        client.close()


def test_a_killed_process_is_not_struck_again_before_it_is_reaped(tmp_path: Path):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        event = {"op": "push", "phase": "begin", "pid": victim.pid, "key": "small", "task_id": "pushers",
                 "map_index": 0, "run_id": "soak_00001"}  # fmt: skip
        (tmp_path / f"worker1-{victim.pid}.jsonl").write_text(json.dumps(event) + "\n")
        chaos = _nemesis(tmp_path, Fault(1.0, "kill"), Fault(1.0, "kill"), Fault(1.0, "kill"))
        chaos.tick(1.0)  # unreaped, the victim is still in /proc
        assert [e["target"] for e in chaos.events] == [f"pid {victim.pid}"]
        assert [f.at for f in chaos.pending] == [2.0, 2.0]  # the others wait for another push in flight
    finally:
        victim.kill()
        victim.wait()
