"""Start-up runs with cyclic GC off and is frozen after; what tests make afterwards is still collected."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from xcomsim.env.heap import long_lived_startup


class _Cycle:
    finalised: list[str] = []

    def __init__(self, name: str):
        self.name = name
        self.me = self

    def __del__(self):
        _Cycle.finalised.append(self.name)


def test_the_block_runs_without_the_collector_and_its_objects_are_frozen():
    before = gc.get_freeze_count()
    with long_lived_startup():
        assert not gc.isenabled()
        kept = [[i] for i in range(5000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= before + len(kept)


def test_cyclic_garbage_made_after_start_up_is_still_collected():
    with long_lived_startup():
        pass
    _Cycle("after")
    gc.collect()
    assert "after" in _Cycle.finalised


def test_a_failing_block_still_turns_the_collector_back_on():
    with pytest.raises(RuntimeError), long_lived_startup():
        raise RuntimeError("import failed")
    assert gc.isenabled()


def test_a_caller_that_turned_the_collector_off_keeps_it_off_and_nothing_is_frozen():
    gc.disable()
    try:
        before = gc.get_freeze_count()
        with long_lived_startup():
            _unused = [[i] for i in range(1000)]
        # Nothing frozen: the count does not grow (on 3.13 it shrinks as frozen objects die meanwhile).
        assert not gc.isenabled() and gc.get_freeze_count() <= before
    finally:
        gc.enable()


def test_the_session_world_is_frozen_once_built(tmp_path):
    script = """
import gc
import subprocess
import sys
from pathlib import Path
from xcomsim.env import Simulation
from xcomsim.settings import HarnessSettings
at_start = gc.get_freeze_count()  # 0 on 3.11 and 3.13; CPython 3.12 starts with a few hundred frozen
with Simulation.start(HarnessSettings(dags_folder=Path("dags"))) as sim:
    print(gc.isenabled(), gc.get_freeze_count() - at_start)
"""
    (tmp_path / "dags").mkdir()
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    enabled, frozen = done.stdout.split()[-2:]
    assert enabled == "True"
    assert int(frozen) > 100_000  # Airflow, FastAPI and the API routes, at least
