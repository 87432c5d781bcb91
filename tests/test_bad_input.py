"""Each bad input gives one line that names the cause: no hang, no Airflow traceback wall."""

from __future__ import annotations

import pytest


def test_unknown_backend_option_names_the_module(clean_pytester):
    clean_pytester.makepyfile(test_x="def test_x(xcomsim_env): pass")
    result = clean_pytester.runpytest_subprocess(
        "--xcomsim", "--xcomsim-backend=no_such_pkg.xcom.MyXCom", "--xcomsim-conformance=off"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: xcomsim: XCom backend 'no_such_pkg.xcom.MyXCom': no module named 'no_such_pkg' in *Fix: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--xcomsim-bucket=Not_A_Bucket", "*xcomsim bucket 'Not_A_Bucket' is not a valid S3 bucket name*"),
        ("--xcomsim-dags=/no/such/folder", "*xcomsim dags folder '/no/such/folder' does not exist*"),
        ("--xcomsim-run-timeout=soon", "*xcomsim run timeout 'soon' is not a number*"),
        ("--xcomsim-backend=NoDots", "*is not a dotted path*"),
        ("--xcomsim-profile=fast", "*xcomsim profile 'fast' is unknown; use one of ci, dev, thorough*"),
    ],
)
def test_bad_options_are_usage_errors(clean_pytester, option, message):
    clean_pytester.makepyfile(test_x="def test_x(): pass")
    result = clean_pytester.runpytest_subprocess("--xcomsim", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_marker_backend_dag_file_and_dag_id(clean_pytester):
    dags = clean_pytester.mkdir("dags")
    (dags / "good.py").write_text(
        "from datetime import datetime\n"
        "from airflow.sdk import DAG, task\n"
        "with DAG('good', start_date=datetime(2024, 1, 1), schedule=None):\n"
        "    @task\n"
        "    def only():\n"
        "        return 1\n"
        "    only()\n"
    )
    clean_pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.xcomsim(backend="xcom_backends.NotAnXComBackend")
        def test_not_a_subclass(xcomsim_env):
            pass

        @pytest.mark.xcomsim(backend="xcom_backends.NoSuchClass")
        def test_missing_class(xcomsim_env):
            pass

        @pytest.mark.xcomsim(colour="blue")
        def test_unknown_setting(xcomsim_env):
            pass

        def test_missing_dag_id(run_dag):
            run_dag("nope")

        def test_good_dag_still_runs(run_dag):
            assert run_dag("good").succeeded
        """
    )
    result = clean_pytester.runpytest_subprocess("--xcomsim", f"--xcomsim-dags={dags}", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1, errors=3)
    assert "During handling" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*xcomsim: XCom backend 'xcom_backends.NotAnXComBackend' is not a subclass of airflow.sdk.bases.xcom.BaseXCom*",
            "*xcomsim: XCom backend 'xcom_backends.NoSuchClass': module 'xcom_backends' has no attribute 'NoSuchClass'*",
            "*xcomsim: unknown xcomsim setting(s) [[]'colour'[]]*",
            "*xcomsim: no DAG with id 'nope' in * (DAGs found: good)*",
        ]
    )


def test_dag_file_that_fails_to_import(clean_pytester):
    dags = clean_pytester.mkdir("dags")
    (dags / "broken.py").write_text("from airflow.sdk import DAG\nraise RuntimeError('the DAG file is broken')\n")
    clean_pytester.makepyfile(test_broken="def test_run(run_dag):\n    run_dag('broken_dag')\n")
    result = clean_pytester.runpytest_subprocess("--xcomsim", f"--xcomsim-dags={dags}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*xcomsim: DAG 'broken_dag' not found in *, and these DAG files failed to import:*",
            "*broken.py: RuntimeError: the DAG file is broken*",
        ]
    )


def test_run_dag_rejects_something_that_is_not_a_dag(run_dag):
    with pytest.raises(pytest.fail.Exception, match="run_dag needs an airflow.sdk.DAG or a DAG id, got int"):
        run_dag(42)


def test_a_session_backend_that_cannot_load_is_said_once_and_stops_the_session(clean_pytester):
    """Every test would fail on it the same way: one usage error, not one error per test."""
    clean_pytester.makepyfile(
        test_three="""
        def test_a(xcomsim_env):
            pass

        def test_b(xcomsim_env):
            pass

        def test_c(run_dag):
            pass
        """
    )
    result = clean_pytester.runpytest_subprocess("--xcomsim", "--xcomsim-backend=no_such_module.MyXCom", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert out.count("no module named 'no_such_module'") == 1, out[-3000:]
    assert "from --xcomsim-backend" in out and "collected" not in out  # before collection, not after
