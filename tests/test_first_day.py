"""A newcomer's first day, round 3: Ctrl-C, a backend path that does not import, the report.

Each test starts pytest the way a user does, in a project folder of their own, and checks
what they see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

HANGING_DAG = """
import time
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

with DAG("hang", start_date=datetime(2024, 1, 1), schedule=None):

    @task(retries=2)
    def hang():
        Path({marker!r}).write_text("running")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return "woke"

    hang()
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _project(folder: Path, marker: Path) -> Path:
    (folder / "dags").mkdir(parents=True)
    (folder / "pyproject.toml").write_text('[tool.pytest.ini_options]\nxcomsim = true\nxcomsim_dags = "dags"\n')
    (folder / "dags" / "hang.py").write_text(HANGING_DAG.format(marker=str(marker)))
    (folder / "test_hang.py").write_text(
        textwrap.dedent(
            """
            def test_hang(run_dag):
                run_dag("hang")


            def test_after(run_dag):
                pass
            """
        )
    )
    return folder


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"pytest ended before the task started:\n{proc.communicate()[0][-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the task did not start within {seconds}s:\n{proc.communicate()[0][-4000:]}")
        time.sleep(0.1)


def test_ctrl_c_inside_a_running_task_stops_the_session_and_leaves_nothing_running(tmp_path):
    """A terminal's Ctrl-C is SIGINT to the whole foreground process group: pytest, and its servers."""
    marker = tmp_path / "started"
    project = _project(tmp_path / "proj", marker)
    proc = subprocess.Popen(
        [str(BIN / "pytest"), "-p", "no:randomly", "-p", "no:cacheprovider", "-rA", "test_hang.py"],
        cwd=project, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a shell's foreground job
    )  # fmt: skip
    try:
        _wait_for(marker, proc, 240)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the session has no child servers to check"
        os.killpg(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-4000:]
    assert "!!! KeyboardInterrupt !!!" in output.replace("!!!!", "!!!"), output[-4000:]
    assert "PASSED test_hang.py::test_hang" not in output, output[-4000:]
    assert "test_after" not in output.split("short test summary", 1)[-1], output[-4000:]  # the session stopped
    assert "ConnectionResetError" not in output and "retry" not in output.lower().split("keyboardinterrupt")[0][-2000:]
    deadline = time.monotonic() + 15
    while (alive := [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"left running after Ctrl-C: {[c.cmdline() for c in alive]}"
