"""A newcomer's first hour: their own project folder, their own backend and DAGs, typed as they would.

One pytest session is started the way a user starts it (the ``pytest`` console script,
so the current directory is not on ``sys.path``) from a subfolder of a project whose
backend module sits in the project folder. Its output is checked for each thing that
used to go wrong there: the backend not found, the DAG folder taken from the rootdir,
Airflow's internal warnings and tracebacks in the output, the user's own warning lost.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's xcomsim; the project folder is NOT on the path
    return env


def _project(folder: Path) -> Path:
    (folder / "dags").mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "pyproject.toml").write_text("[tool.pytest.ini_options]\nxcomsim = true\n")
    (folder / "my_xcom.py").write_text(
        textwrap.dedent(
            """
            from airflow.sdk.bases.xcom import BaseXCom


            class MyXCom(BaseXCom):
                pass


            class TupleToListXCom(BaseXCom):
                # Breaks round-trip-exact: a tuple comes back as a list.

                @staticmethod
                def serialize_value(value, **kwargs):
                    return BaseXCom.serialize_value(list(value) if isinstance(value, tuple) else value, **kwargs)
            """
        )
    )
    # Parsing this imports a provider module that imports a name Airflow moved: Airflow's noise, not the user's.
    (folder / "dags" / "sensing.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime

            from airflow.providers.standard.sensors.python import PythonSensor
            from airflow.sdk import DAG

            with DAG("sensing", start_date=datetime(2024, 1, 1), schedule=None):
                PythonSensor(task_id="ready", python_callable=lambda: True)
            """
        )
    )
    # The same deprecated import in the user's own DAG: their warning to see.
    (folder / "dags" / "old_style.py").write_text(
        "from airflow.utils.operator_helpers import determine_kwargs  # a DAG file's own import, moved in Airflow 3\n"
    )
    (folder / "dags" / "hello.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime

            from airflow.sdk import DAG, task

            with DAG("hello", start_date=datetime(2024, 1, 1), schedule=None):

                @task
                def say():
                    return "hi"

                say()
            """
        )
    )
    (folder / "tests" / "test_mine.py").write_text(
        textwrap.dedent(
            """
            import warnings


            def test_backend_from_the_project_folder(xcomsim_env):
                assert xcomsim_env.backend.__module__ == "my_xcom"
                warnings.warn("the user's own warning", UserWarning)


            def test_dag_from_the_typed_folder(run_dag):
                assert run_dag("hello").xcom("say") == "hi"


            def test_a_value_airflow_cannot_send(xcomsim_env):
                from xcomsim.scheduler.workload import WORKLOAD_TASK_ID, workload_dag
                from xcomsim.task_context import start_task_instances, thread_local_task_state

                dag = workload_dag("newcomer")
                with thread_local_task_state():
                    (handle,) = start_task_instances(dag, [(WORKLOAD_TASK_ID, -1)])
                    with handle.active() as ti:
                        ti.xcom_push(key="k", value=float("inf"))
            """
        )
    )
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _project(tmp_path_factory.mktemp("userproj"))


@pytest.fixture(scope="module")
def session(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "pytest"), "--xcomsim-backend=my_xcom.MyXCom", "--xcomsim-conformance=off", "--xcomsim-dags=../dags",
         "--xcomsim-report=report.html", "-p", "no:randomly", "-p", "no:cacheprovider", "-rA"],
        cwd=project / "tests", capture_output=True, text=True, timeout=600, env=_env(),
    )  # fmt: skip


def test_backend_module_in_the_project_folder_is_found(session):
    assert "PASSED test_mine.py::test_backend_from_the_project_folder" in session.stdout, session.stdout[-4000:]


def test_dags_path_is_taken_from_where_pytest_was_started(session):
    assert "PASSED test_mine.py::test_dag_from_the_typed_folder" in session.stdout, session.stdout[-4000:]


def test_no_airflow_internal_warning_and_the_users_own_is_kept(session):
    out = session.stdout + session.stderr
    assert "StarletteDeprecationWarning" not in out and "starlette.testclient" not in out, out[-4000:]
    summary = out.split("warnings summary", 1)[-1]
    assert "UserWarning: the user's own warning" in summary, out[-4000:]
    # A provider's import of a name Airflow moved (re-raised by the DAG parser, located in the provider) is
    # hidden; the same import in the user's own DAG file is theirs and is shown.
    moved = [line for line in summary.splitlines() if "operator_helpers.determine_kwargs` attribute is deprecated" in line]
    assert len(moved) == 1 and "dags/old_style.py:1: UserWarning" in moved[0], summary[:4000]
    assert "providers/standard/sensors/python.py" not in out, summary[:4000]


def test_a_failure_inside_airflow_shows_the_users_frames_not_httpxs(session):
    out = session.stdout
    assert "FAILED test_mine.py::test_a_value_airflow_cannot_send" in out, out[-4000:]
    failure = out.split("test_a_value_airflow_cannot_send", 1)[1]
    assert "Out of range float values are not JSON compliant" in failure
    assert "ti.xcom_push(key=\"k\", value=float(\"inf\"))" in failure  # the user's line
    assert "httpx/_client.py" not in failure and "hidden by xcomsim" in failure, failure[:6000]


def test_the_html_report_holds_the_sessions_dag_runs(session, project):
    report = project / "tests" / "report.html"  # typed relative to where pytest was started
    assert f"xcomsim report: {report}" in session.stdout, session.stdout[-3000:]
    page = report.read_text()
    assert 'data-state="success"' in page and ">hello " in page and ">say<" in page, page[:3000]


def test_the_kits_replay_hint_works_pasted_after_a_run_from_a_subfolder(tmp_path):
    """Typed from tests/ with a relative --xcomsim-dags: the hint cds to the rootdir, so the path is made absolute."""
    project = _project(tmp_path / "userproj")
    env = _env()  # the venv is not activated: its bin/ is not on PATH, as in a user's fresh shell
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != BIN)
    first = subprocess.run(
        [str(BIN / "pytest"), "--xcomsim-backend=my_xcom.TupleToListXCom", "--xcomsim-dags=../dags", "--xcomsim-report=r.html",
         "-p", "no:cacheprovider", "-k", "test_round_trip_is_exact"],
        cwd=project / "tests", capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    lines = first.stdout.splitlines()
    assert first.returncode == 1 and any("xcomsim: replay" in line for line in lines), first.stdout[-4000:]
    hint = lines[next(i for i, line in enumerate(lines) if "xcomsim: replay" in line) + 1].split("   (")[0]
    assert re.match(rf"cd {re.escape(str(project))} && \S+/python\S* -m pytest ", hint), hint
    assert "--xcomsim-backend=my_xcom.TupleToListXCom" in hint, hint
    assert f"--xcomsim-dags={project / 'dags'}" in hint and "--xcomsim-report" not in hint, hint
    pasted = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=600, env=env)
    assert pasted.returncode == 1 and "1 failed" in pasted.stdout.splitlines()[-1], pasted.stdout[-3000:]
    broken = re.search(r"\[round-trip-exact\] pushed .*", first.stdout)
    assert broken and broken.group(0) in pasted.stdout  # the same counterexample


def test_a_dags_path_that_is_nowhere_names_both_candidates(tmp_path):
    project = _project(tmp_path / "userproj")
    proc = subprocess.run([str(BIN / "pytest"), "--xcomsim-dags=dagz"], cwd=project / "tests", capture_output=True,
                          text=True, timeout=300, env=_env())  # fmt: skip
    assert proc.returncode != 0
    line = next(line for line in (proc.stdout + proc.stderr).splitlines() if "xcomsim dags folder" in line)
    assert str(project / "tests" / "dagz") in line and str(project / "dagz") in line, line
    assert "Traceback" not in proc.stderr


def test_a_backend_that_is_nowhere_names_the_folders_and_the_fix(tmp_path, monkeypatch):
    from xcomsim.env import xcom_backend
    from xcomsim.errors import BackendImportError

    monkeypatch.setattr(xcom_backend, "_SEARCH", [])
    monkeypatch.chdir(tmp_path)
    xcom_backend.search_also([tmp_path / "root"])
    with pytest.raises(BackendImportError) as caught:
        xcom_backend.load_backend("not_in_any_folder.xcom.MyXCom")
    message = str(caught.value)
    assert str(tmp_path / "root") in message and str(tmp_path) in message
    assert "no module named 'not_in_any_folder'" in message and 'pythonpath = ["src"]' in message


def test_a_backend_whose_own_import_fails_is_not_reported_as_missing(tmp_path, monkeypatch):
    from xcomsim.env import xcom_backend
    from xcomsim.errors import BackendImportError

    (tmp_path / "broken_xcom.py").write_text("import no_such_dependency_of_mine\n")
    monkeypatch.setattr(xcom_backend, "_SEARCH", [tmp_path])
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(BackendImportError, match="No module named 'no_such_dependency_of_mine'"):
        xcom_backend.load_backend("broken_xcom.MyXCom")


# -- tracebacks: Airflow's plumbing hidden, the user's frames kept ----------------------------


def _chain() -> BaseException:
    """user -> airflow.sdk.execution_time -> httpx -> httpx -> json (raises), as real modules would be."""
    source = {
        "json.encoder": "def encode(v):\n    raise ValueError('Out of range float values are not JSON compliant')\n",
        "httpx._content": "def post(v):\n    return send(v)\ndef send(v):\n    return encode(v)\n",
        "airflow.sdk.execution_time.task_runner": "def xcom_push(v):\n    return post(v)\n",
    }
    spaces: dict[str, dict[str, object]] = {}
    for name, code in source.items():
        spaces[name] = {"__name__": name}
        exec(compile(code, f"<{name}>", "exec"), spaces[name])  # noqa: S102
    spaces["httpx._content"]["encode"] = spaces["json.encoder"]["encode"]
    spaces["airflow.sdk.execution_time.task_runner"]["post"] = spaces["httpx._content"]["post"]
    try:
        spaces["airflow.sdk.execution_time.task_runner"]["xcom_push"](float("inf"))  # type: ignore[operator]
    except ValueError as exc:
        return exc
    raise AssertionError("the chain did not raise")


def test_trim_keeps_the_call_into_airflow_and_the_raise_point():
    from xcomsim.noise import trim_traceback

    exc = _chain()
    assert trim_traceback(exc) == 2
    names = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    assert names == ["_chain", "xcom_push", "encode"], names
    assert "2 frames of httpx plumbing hidden by xcomsim" in exc.__notes__[0]


def test_trim_reaches_into_exception_groups_and_causes():
    from xcomsim.noise import trim_traceback

    inner, cause = _chain(), _chain()
    inner.__cause__ = cause
    group = ExceptionGroup("two failures", [inner])
    assert trim_traceback(group) == 4


# -- xcomsim gc on a DB that was never migrated ------------------------------------------------


@pytest.mark.parametrize(
    "url, expected",
    [("sqlite:///{tmp}/empty.db", "has no dag_run or xcom table"),
     ("postgresql+psycopg://me:s3cret@127.0.0.1:1/airflow", "cannot read the metadata DB")],
)  # fmt: skip
def test_gc_on_a_db_it_cannot_read_says_so_in_one_line(tmp_path, url, expected):
    (tmp_path / "empty.db").touch()
    url = url.format(tmp=tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "xcomsim.cli", "gc", "--dry-run", "--config", f"database.sql_alchemy_conn={url}",
         "--path", "s3://aws_default@my-bucket/xcom"],
        capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xcomsim gc: ") and expected in lines[0], lines
    assert "s3cret" not in lines[0] and (url.split("?")[0].replace("s3cret", "***") in lines[0])


def test_other_path_options_follow_the_same_rule(tmp_path):
    from types import SimpleNamespace

    from pytest_plugin import session

    def config(typed: str | None, ini: str) -> SimpleNamespace:
        return SimpleNamespace(invocation_params=SimpleNamespace(dir=tmp_path / "tests"), rootpath=tmp_path,
                               getoption=lambda name: typed, getini=lambda name: ini)  # fmt: skip

    assert session.hypothesis_db(config("db", ""), "db", "") == str(tmp_path / "tests" / "db")  # type: ignore[arg-type]
    assert session.hypothesis_db(config(None, "db"), None, "db") == str(tmp_path / "db")  # type: ignore[arg-type]
    assert session.report_path(config("r.html", "")) == tmp_path / "tests" / "r.html"  # type: ignore[arg-type]
    assert session.report_path(config(None, "r.html")) == tmp_path / "r.html"  # type: ignore[arg-type]
