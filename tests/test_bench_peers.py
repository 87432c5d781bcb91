"""The peers benchmark's own logic: the projects it writes and the ratios it prints (no timing asserted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from xcomsim.bench import peers

# Its subject does not vary with the interpreter: CI runs it on one Python only.
pytestmark = pytest.mark.once


@pytest.mark.parametrize("tool", peers.TOOLS, ids=lambda t: t.name)
@pytest.mark.parametrize("dag", sorted(peers.DAGS))
def test_each_project_holds_the_dag_and_n_tests(tmp_path: Path, tool: peers.Tool, dag: str) -> None:
    folder = peers._project(tmp_path, tool, dag, 3)
    dag_id, source = peers.DAGS[dag]
    assert (folder / "dags" / f"{dag_id}.py").read_text() == source
    tests = ast.parse((folder / "test_session.py").read_text())
    assert [f.name for f in tests.body if isinstance(f, ast.FunctionDef)] == ["test_run_0", "test_run_1", "test_run_2"]
    for path in folder.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_every_tool_switches_the_other_plugins_off() -> None:
    plugins = {"xcomsim": "no:xcomsim", "pytest-airflow-in-a-box": f"no:{peers.IN_A_BOX}"}
    for tool in peers.TOOLS:
        for other, flag in plugins.items():
            assert (flag in tool.args) == (other != tool.name), (tool.name, other)


def test_table_gives_xcomsim_over_each_peer_and_each_tools_per_test_tail() -> None:
    spiky = (0.1,) * 8 + (0.5, 0.5)
    samples = {
        ("small", "xcomsim"): [peers.Session(s, (0.1,) * 10) for s in (2.0, 3.0, 9.0)],
        ("small", "dag.test()"): [peers.Session(s, spiky) for s in (6.0, 5.0, 4.0)],
    }
    rows = [row.split() for row in peers.table(samples, 20).splitlines()]
    assert rows[1][4] == "1.00" and rows[2][4] == "0.60"
    assert rows[1][5:] == ["100", "ms", "100", "ms", "1.00"]
    assert rows[2][5:] == ["100", "ms", "500", "ms", "5.00"]  # p90 of 30 tests, two in ten of them slow


def test_a_session_reports_each_tests_time(tmp_path: Path) -> None:
    (tmp_path / "test_session.py").write_text(
        "import time\n\ndef test_run_0():\n    time.sleep(0.3)\n\ndef test_run_1():\n    pass\n"
    )
    tool = peers.Tool("plain", lambda dag_id, n: {}, ("-q", "-p", "no:randomly", "-p", "no:xcomsim"))
    session = peers.run_session(tmp_path, tool, 2)
    assert len(session.tests) == 2 and session.tests[0] >= 0.3 > session.tests[1]
    assert session.seconds > sum(session.tests)


def test_a_session_that_does_not_pass_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "test_session.py").write_text("def test_run_0():\n    assert False\n")
    tool = peers.Tool("broken", lambda dag_id, n: {}, ("-q", "-p", "no:randomly", "-p", "no:xcomsim"))
    with pytest.raises(RuntimeError, match="did not pass all 1 tests"):
        peers.run_session(tmp_path, tool, 1)


def test_bad_counts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        peers.main(["--rounds", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_a_session_that_outlives_its_limit_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "test_session.py").write_text("import time\n\ndef test_run_0():\n    time.sleep(60)\n")
    tool = peers.Tool("slow", lambda dag_id, n: {}, ("-q", "-p", "no:randomly", "-p", "no:xcomsim"))
    with pytest.raises(RuntimeError, match="did not finish within 3s"):
        peers.run_session(tmp_path, tool, 1, limit=3)


def test_a_session_ignores_the_callers_addopts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI's second tier exports xcomsim's service flags; a peer session with xcomsim switched off
    would refuse them as unknown arguments."""
    (tmp_path / "test_session.py").write_text("def test_run_0():\n    pass\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--xcomsim-db=postgresql://nobody@127.0.0.1:1/postgres")
    tool = peers.Tool("plain", lambda dag_id, n: {}, ("-q", "-p", "no:randomly", "-p", "no:xcomsim"))
    assert peers.run_session(tmp_path, tool, 1).seconds > 0


def test_a_tool_that_keeps_state_gets_one_unmeasured_session_first(tmp_path: Path, monkeypatch) -> None:
    runs = tmp_path / "runs"
    test = f"def test_run_0():\n    open({str(runs)!r}, 'a').write('x')\n"
    tool = peers.Tool("kept", lambda dag_id, n: {"test_session.py": test},
                      ("-q", "-p", "no:randomly", "-p", "no:xcomsim"), prepare=True)  # fmt: skip
    samples = peers.measure(["small"], rounds=2, n=1, tools=[tool])
    assert runs.read_text() == "xxx" and len(samples["small", "kept"]) == 2


def test_the_kept_dag_test_project_migrates_only_a_home_without_a_db(tmp_path: Path) -> None:
    tool = next(t for t in peers.TOOLS if t.name == "dag.test(), DB kept")
    conftest = (peers._project(tmp_path, tool, "small", 1) / "conftest.py").read_text()
    assert 'Path(__file__).parent / "airflow-home"' in conftest
    assert 'if not os.path.exists(f"{_home}/airflow.db"):' in conftest and "mkdtemp" not in conftest
