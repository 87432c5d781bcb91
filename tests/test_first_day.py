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


@pytest.mark.parametrize(
    "typed, expected",
    [("my_xcm.MyXCom", "no module named 'my_xcm' (did you mean 'my_xcom'?)"),
     ("my_xcom.MyXCm", "module 'my_xcom' has no attribute 'MyXCm' (did you mean 'MyXCom'?)"),
     ("my_xcom.Unrelated", "module 'my_xcom' has no attribute 'Unrelated' (the session's")],
)  # fmt: skip
def test_a_backend_path_that_does_not_import_is_one_line_before_anything_runs(tmp_path, typed, expected):
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\nxcomsim = true\n")
    (tmp_path / "my_xcom.py").write_text("from airflow.sdk.bases.xcom import BaseXCom\n\n\nclass MyXCom(BaseXCom):\n    pass\n")
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    open('ran', 'w').close()\n")
    proc = subprocess.run([str(BIN / "pytest"), f"--xcomsim-backend={typed}", "-p", "no:cacheprovider"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, lines
    assert len(lines) == 1 and lines[0].startswith("ERROR: xcomsim: XCom backend") and expected in lines[0], lines
    assert not (tmp_path / "ran").exists()  # nothing was collected or run first


SLOW_DAG = """
import time
from datetime import datetime

from airflow.sdk import DAG, task

with DAG("slow", start_date=datetime(2024, 1, 1), schedule=None):

    @task
    def nap():
        time.sleep(60)

    nap()
"""

FINE_DAG = """
from datetime import datetime

from airflow.sdk import DAG, task

with DAG("fine", start_date=datetime(2024, 1, 1), schedule=None):

    @task
    def hello():
        return "hi"

    hello()
"""


def test_a_run_timeout_and_a_broken_dag_file_are_said_once_without_airflows_tracebacks(tmp_path):
    (tmp_path / "dags").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nxcomsim = true\nxcomsim_dags = "dags"\nxcomsim_run_timeout = "5"\n'
    )
    (tmp_path / "dags" / "slow.py").write_text(SLOW_DAG)
    (tmp_path / "dags" / "fine.py").write_text(FINE_DAG)
    (tmp_path / "dags" / "broken.py").write_text("from airflow.sdk import DAG\n\nimport no_such_thing_here\n")
    (tmp_path / "test_mine.py").write_text(
        "def test_slow(run_dag):\n    run_dag('slow')\n\n\n"
        "def test_fine(run_dag):\n    assert run_dag('fine').xcom('hello') == 'hi'\n\n\n"
        "def test_fine_again(run_dag):\n    assert run_dag('fine').succeeded\n"
    )
    proc = subprocess.run([str(BIN / "pytest"), "-p", "no:randomly", "-p", "no:cacheprovider", "-rA"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "1 failed, 2 passed" in out, out[-4000:]
    failure = out.split("_ test_slow _", 1)[1].split("short test summary", 1)[0]
    assert ("DAG slow did not finish within the run timeout of 5s; interrupted task nap at dags/slow.py:11 "
            "(time.sleep(60))") in failure, failure[:3000]  # fmt: skip
    assert "Traceback" not in out and "task_runner.py" not in out, out[-6000:]
    # The broken file: once, as a warning located at its own line, in no test's captured output.
    assert out.count("No module named 'no_such_thing_here'") == 1, out[-6000:]
    assert "dags/broken.py:3: DagFileWarning: xcomsim: DAG file broken.py failed to import" in out, out[-3000:]
