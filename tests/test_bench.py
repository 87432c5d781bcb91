"""The measuring tools: percentiles, timing, the `xcomsim bench` command and the benchmark suite.

Nothing here asserts a timing: the figures depend on the machine. What is checked
is that the tools compute what they say and produce what they promise.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xcomsim.bench.latency import PAYLOAD_SIZES, payload, standard_setups
from xcomsim.bench.stats import Summary, percentile, time_calls
from xcomsim.settings import AIRFLOW_BACKEND, DEFAULT_BACKEND

ROOT = Path(__file__).resolve().parent.parent

BENCHMARKS = ROOT / "tests" / "benchmarks"

# Its subject does not vary with the interpreter: CI runs it on one Python only.
pytestmark = pytest.mark.once


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    return {**env, **extra}


# -- percentiles ------------------------------------------------------------------------------


def test_percentile_known_values():
    samples = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 4.0
    assert percentile(samples, 50) == 2.5
    assert percentile(samples, 25) == pytest.approx(1.75)
    assert percentile(samples, 99) == pytest.approx(3.97)
    assert percentile([7.0], 99) == 7.0


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=200), st.integers(1, 99))
def test_percentile_matches_the_inclusive_quantile_definition(samples, q):
    expected = statistics.quantiles(samples, n=100, method="inclusive")[q - 1]
    assert math.isclose(percentile(samples, q), expected, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("samples, q", [([], 50), ([1.0], -1), ([1.0], 100.5), ([1.0], float("nan"))])
def test_percentile_refuses_bad_input(samples, q):
    with pytest.raises(ValueError):
        percentile(samples, q)


def test_summary_in_milliseconds():
    summary = Summary.of([0.001 * n for n in range(1, 101)])  # 1..100 ms
    assert summary.n == 100
    assert summary.p50 == pytest.approx(0.0505)
    ms = summary.as_ms()
    assert ms["n"] == 100 and ms["min_ms"] == 1.0 and ms["max_ms"] == 100.0
    assert ms["p99_ms"] == pytest.approx(99.01)


def test_time_calls_gives_each_round_its_arguments_and_drops_the_warmup():
    seen = []
    counter = iter(range(100))
    samples = time_calls(seen.append, 3, warmup=2, setup=lambda: (next(counter),))
    assert seen == [0, 1, 2, 3, 4] and len(samples) == 3 and all(s >= 0 for s in samples)
    with pytest.raises(ValueError):
        time_calls(lambda: None, 0)


@pytest.mark.parametrize("size", list(PAYLOAD_SIZES.values()))
def test_payload_serialises_to_exactly_its_size(size):
    assert len(json.dumps(payload(size)).encode()) == size


def test_standard_setups_add_only_a_new_custom_backend():
    names = [s.name for s in standard_setups()]
    assert names == ["airflow-db", "exclusive-inline", "exclusive-s3", "exclusive-redis"]
    assert standard_setups(DEFAULT_BACKEND) == standard_setups(AIRFLOW_BACKEND) == standard_setups()
    custom = standard_setups("my_pkg.xcom.MyXCom")[-1]
    assert (custom.name, custom.backend, custom.store) == ("custom", "my_pkg.xcom.MyXCom", "custom")


# -- the command ------------------------------------------------------------------------------


# A user's backend in the folder they run the command from, configured by its own section. Run as a
# user runs it (the console script: the current directory is not on sys.path), --config gives it its
# bucket; that bucket does not exist, so its row says so in one line and the other rows still print.
TEAM_XCOM = """
import boto3
from airflow.configuration import conf
from airflow.sdk.bases.xcom import BaseXCom


class TeamXCom(BaseXCom):
    @staticmethod
    def serialize_value(value, *, key=None, task_id=None, dag_id=None, run_id=None, map_index=None):
        bucket = conf.get("team_xcom", "bucket")
        boto3.client("s3").put_object(Bucket=bucket, Key=f"{dag_id}/{run_id}/{task_id}/{key}", Body=b"copy")
        return BaseXCom.serialize_value(value)
"""


def _xcomsim_command() -> list[str]:
    script = Path(sys.executable).with_name("xcomsim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "xcomsim.cli"]


def test_bench_command_prints_one_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    (tmp_path / "team_xcom.py").write_text(TEAM_XCOM)
    result = subprocess.run(
        [*_xcomsim_command(), "bench", "--quick", "--harness", "--json", str(out), "--html", str(tmp_path / "b.html"),
         "--backend", "team_xcom.TeamXCom", "--config", "team_xcom.bucket=team-bucket-not-created"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=_clean_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    stdout = result.stdout
    assert "Traceback" not in stdout + result.stderr and "StarletteDeprecationWarning" not in stdout + result.stderr
    failed = [line for line in stdout.splitlines() if "team_xcom.TeamXCom" in line]
    assert len(failed) == 2 and "failed: NoSuchBucket" in failed[0], failed  # its row, and the whole line below
    assert "The specified bucket does not exist" in failed[1], failed
    page = (tmp_path / "b.html").read_text()  # the same figures as charts: latency and footprint, and the failure
    assert page.count('<svg class="chart"') == 2 and "team_xcom.TeamXCom failed: NoSuchBucket" in page
    for header in ("xcom table / 100 runs", "pull p50", "pull p99", "ops/s (2 workers)"):
        assert header in stdout, stdout
    for label in ("Airflow BaseXCom", "ExclusiveXCom inline", "ExclusiveXCom -> S3", "ExclusiveXCom -> Redis"):
        assert label in stdout, stdout
    assert stdout.count("┏") == 1, "one table"
    assert "Fakes are not latency proxies" in stdout and "--xcomsim-redis" in stdout
    assert "warm migrate / fresh DB" in stdout and "examples/s" in stdout and "overhead" in stdout

    document = json.loads(out.read_text())
    backends = {b["name"]: b for b in document["backends"]}
    assert set(backends) == {"airflow-db", "exclusive-inline", "exclusive-s3", "exclusive-redis", "custom"}
    assert "NoSuchBucket" in backends.pop("custom")["error"]
    for entry in backends.values():
        assert "error" not in entry, entry  # a standard row that failed says why
        assert entry["payload_bytes"] == 1024 * 1024
        assert 0 < entry["pull"]["p50_ms"] <= entry["pull"]["p99_ms"] <= entry["pull"]["max_ms"]
        assert entry["pull"]["n"] == 4 and entry["ops_per_s"] > 0
    # What the table is for: inline keeps the 4 MB value in the xcom table, offloading keeps a reference.
    inline = backends["exclusive-inline"]["xcom_table_bytes_per_100_runs"]
    assert inline > 100 * 4_000_000
    assert backends["exclusive-s3"]["xcom_table_bytes_per_100_runs"] < inline / 100
    assert backends["exclusive-redis"]["xcom_table_bytes_per_100_runs"] < inline / 100
    assert set(document["fakes"]) == {"metadata DB", "Redis", "S3"} and "not latency proxies" in document["caveat"]
    assert set(document["claims"]) == {"sql", "redis"}
    assert document["machine"]["nproc"] == os.cpu_count()
    harness = document["harness"]
    assert harness["speed_s"]["fresh_db_s"] > 0 and harness["race_examples_per_s"]
    assert {o["call"] for o in harness["overhead"]} >= {"redis GET", "S3 HeadObject"}


@pytest.mark.parametrize(
    "args, message",
    [(["--size", "1x"], "is not a size"), (["--size", "1"], "at least 2 bytes"), (["--rounds", "0"], "at least 1"),
     (["--workers", "-2"], "at least 1")],
)
def test_bench_command_bad_options(args, message):
    result = subprocess.run([sys.executable, "-m", "xcomsim.cli", "bench", *args], capture_output=True, text=True,
                            timeout=60, env=_clean_env())  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_bench_command_names_a_backend_it_cannot_import(tmp_path):
    result = subprocess.run(
        [*_xcomsim_command(), "bench", "--quick", "--backend", "no_such_pkg.xcom.MyXCom"],
        capture_output=True, text=True, timeout=300, env=_clean_env(), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no_such_pkg" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert str(tmp_path) in result.stderr and "pythonpath" in result.stderr, result.stderr  # where it looked, the fix


@pytest.mark.parametrize("entry", ["nodot=1", "section.option"])
def test_bench_and_gc_refuse_a_config_that_is_not_section_option_value(entry):
    for command in ("bench", "gc"):
        result = subprocess.run([sys.executable, "-m", "xcomsim.cli", command, "--config", entry], capture_output=True,
                                text=True, timeout=60, env=_clean_env())  # fmt: skip
        assert result.returncode == 2 and "is not section.option=value" in result.stderr, result.stderr


# -- the benchmark suite ----------------------------------------------------------------------


def test_benchmark_suite_runs_under_pytest_benchmark_and_saves_json(clean_pytester, monkeypatch):
    monkeypatch.setenv("XCOMSIM_BENCH_ROUNDS", "3")
    saved = clean_pytester.path / "bench.json"
    result = clean_pytester.runpytest_subprocess(
        f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), "-p", "no:randomly",
        str(BENCHMARKS / "test_bench_latency.py"), "-k", "test_pull and exclusive-inline and 1KiB",
        f"--benchmark-json={saved}",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    document = json.loads(saved.read_text())
    (entry,) = document["benchmarks"]
    assert entry["name"] == "test_pull[exclusive-inline-1KiB]"
    assert entry["group"] == "pull 1KiB"
    assert entry["stats"]["rounds"] == 3 and len(entry["stats"]["data"]) == 3
    info = entry["extra_info"]
    assert info["setup"] == "exclusive-inline" and info["payload_bytes"] == 1024
    assert info["p50_ms"] == pytest.approx(sorted(entry["stats"]["data"])[1] * 1000, rel=1e-3)
    assert info["p50_ms"] <= info["p95_ms"] <= info["p99_ms"]
    compare = subprocess.run(  # the `pytest-benchmark compare` command
        [sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; sys.exit(main())", "compare",
         str(saved)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert compare.returncode == 0 and "test_pull[exclusive-inline-1KiB]" in compare.stdout, compare.stderr


def test_default_run_does_not_collect_the_benchmarks(clean_pytester):
    base = [f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), "-p", "no:randomly", "--co", "-q",
            str(ROOT / "tests"), "--ignore-glob=*/tests/test_*.py"]  # only tests/benchmarks is left to decide
    plain = clean_pytester.runpytest_subprocess(*base)
    assert "benchmarks/" not in plain.stdout.str()
    asked = clean_pytester.runpytest_subprocess(*base, "--benchmark-only")
    assert "benchmarks/test_bench_latency.py::test_pull[exclusive-inline-1KiB]" in asked.stdout.str()


@pytest.mark.parametrize(
    "backend, expected",
    [("user_style_backends.S3HookPerPushXCom", r"S3 \((moto|S3 endpoint|.+)\)"),  # its own object names in S3
     ("airflow.sdk.bases.xcom.BaseXCom", r"xcom row \(\w+\)")],
)  # fmt: skip
def test_a_users_backend_row_says_where_its_values_really_went(xcomsim_simulation, backend, expected):
    """Not "(its own)": the stores whose objects grew by the payload, else the xcom row."""
    import re

    from xcomsim.bench import standard
    from xcomsim.bench.footprint import offload_pipeline_dag
    from xcomsim.bench.latency import BackendSetup, probe_dag
    from xcomsim.bench.services import probe

    bucket = xcomsim_simulation.settings.bucket  # the user's bucket option names the test's bucket
    config = standard.StandardConfig.quick(rounds=2, workers=1, pairs=1, size=64 * 1024,
                                           backend_config=(("s3_xcom.bucket", bucket),))  # fmt: skip
    setup = BackendSetup("custom", backend, backend, "custom")
    with xcomsim_simulation.environment() as env:
        services = probe(env)
    row = standard._measure(xcomsim_simulation, config, setup, "(its own)", payload(config.size),
                            offload_pipeline_dag(), {1: probe_dag()}, lambda step: None, services)  # fmt: skip
    assert re.fullmatch(expected, row.values_in), row.values_in


def test_observed_values_in_names_each_store_that_grew_and_ignores_small_writes():
    from xcomsim.bench.services import Service
    from xcomsim.bench.standard import observed_values_in

    services = [Service("S3", "moto server", True, "moto"), Service("Redis", "fakeredis", True, "fakeredis"),
                Service("metadata DB", "SQLite in memory", True, "SQLite")]  # fmt: skip
    before = {"s3://xcomsim/guards/a": 10}
    after = {"s3://xcomsim/guards/a": 10, "s3://team/values/k": 1000, "redis:marker": 3, "file:///data/xcom/k.json": 900}
    assert observed_values_in(before, after, 1000, services) == "S3 (moto) + files (file:///data/xcom)"
    assert observed_values_in(before, {**before, "redis:marker": 3}, 1000, services) == "xcom row (SQLite)"
