"""Without --xcomsim the plugin adds its options and nothing else."""

from __future__ import annotations

import textwrap


def test_importing_the_plugin_imports_neither_airflow_nor_the_harness(run_python):
    proc = run_python(
        textwrap.dedent(
            """
            import sys
            import pytest_plugin.plugin
            loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"airflow", "xcomsim", "fakeredis", "moto"})
            print(loaded)
            assert not loaded, loaded
            """
        )
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_plugin_off_leaves_airflow_unloaded_and_skips_harness_tests(clean_pytester):
    clean_pytester.makepyfile(
        test_inert="""
        import os, sys

        def test_nothing_loaded():
            assert not any(m.split(".")[0] == "airflow" for m in sys.modules)
            assert "AIRFLOW_HOME" not in os.environ
            assert "AIRFLOW_CONN_REDIS_DEFAULT" not in os.environ

        def test_needs_harness(run_dag):
            raise AssertionError("must be skipped when the harness is off")
        """
    )
    result = clean_pytester.runpytest_subprocess("-p", "no:randomly", "-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs the xcomsim harness: run pytest --xcomsim*"])


def test_options_are_registered_with_ini_forms(clean_pytester):
    result = clean_pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "*--xcomsim *turn the xcomsim harness on*",
            "*--xcomsim-backend=*",
            "*--xcomsim-dags=*",
            "*xcomsim (bool)*",
            "*xcomsim_backend (string)*",
        ]
    )


def test_ini_switch_and_ini_backend(clean_pytester):
    clean_pytester.makeini(
        """
        [pytest]
        xcomsim = true
        xcomsim_backend = xcom_backends.TaggingXComA
        """
    )
    clean_pytester.makepyfile(
        test_ini="""
        def test_backend_from_ini(xcomsim_env):
            assert xcomsim_env.backend.__name__ == "TaggingXComA"
        """
    )
    result = clean_pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)
