"""The kit's tests among the user's: their conftests apply, their node ids paste back, "not run" says why.

Each pytester project is a user's folder: a backend module at the top, tests and a
``conftest.py`` in ``tests/``, the kit collected by ``--xcomsim-backend``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xcomsim.conformance.verdict import CANNOT_TEST, Verdicts

ROOT = Path(__file__).resolve().parent.parent

BACKEND = '''
import json
import uuid

import boto3
from airflow.sdk.bases.xcom import BaseXCom
from airflow.sdk.serde import deserialize, serialize


class BucketXCom(BaseXCom):
    """Offloads values of 100 bytes and more to its own bucket, which an operator must create."""

    @staticmethod
    def serialize_value(value, **kwargs):
        data = json.dumps(serialize(value), ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) < 100:
            return {"inline": serialize(value)}
        name = f"values/{uuid.uuid4().hex}"
        boto3.client("s3").put_object(Bucket="my-bucket", Key=name, Body=data)
        return {"object": name}

    @staticmethod
    def deserialize_value(result):
        if "object" in result.value:
            body = boto3.client("s3").get_object(Bucket="my-bucket", Key=result.value["object"])["Body"].read()
            return deserialize(json.loads(body))
        return deserialize(result.value["inline"])
'''

BUCKET_CONFTEST = '''
import pytest


@pytest.fixture(autouse=True)
def my_bucket(xcomsim_env):
    xcomsim_env.s3.create_bucket(Bucket="my-bucket")
'''

KIT = "tests/xcomsim_conformance.py::TestBackendContract"
OPTIONS = ("--xcomsim-backend=my_backend.BucketXCom", "--xcomsim-profile=ci", "-p", "no:randomly")


@pytest.fixture
def project(clean_pytester, monkeypatch):
    """A user's project: the backend at the top (on the path), tests in ``tests/``."""
    path = clean_pytester.path
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{path}")
    (path / "pyproject.toml").write_text("[tool.pytest.ini_options]\nxcomsim = true\n")
    (path / "my_backend.py").write_text(BACKEND)
    (path / "tests").mkdir()
    (path / "tests" / "test_mine.py").write_text("def test_mine():\n    pass\n")
    return clean_pytester


def test_a_conftest_in_the_tests_folder_reaches_the_kit_and_its_node_ids_paste_back(project):
    (project.path / "tests" / "conftest.py").write_text(BUCKET_CONFTEST)
    result = project.runpytest_subprocess(*OPTIONS, "-k", "offload_at_and_above or test_mine", "-v")
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    assert f"{KIT}::test_offload_at_and_above_threshold_only PASSED" in output, output[-3000:]
    assert "discovered: offloads >= 100 B to s3://my-bucket/values/" in output
    assert re.search(r"^  offload-threshold\s+kept$", output, re.M), output[-3000:]
    # the node id, pasted back, runs that test alone (the user's own test is not what runs)
    again = project.runpytest_subprocess(*OPTIONS, f"{KIT}::test_offload_at_and_above_threshold_only", "-v")
    again.assert_outcomes(passed=1)
    assert "test_mine" not in again.stdout.str().split("xcomsim conformance")[0].split("collected")[1]


def test_a_missing_bucket_is_not_run_with_its_cause_and_fix_in_every_output(project):
    report = project.path / "report.json"
    page = project.path / "report.html"
    result = project.runpytest_subprocess(*OPTIONS, "-k", "offload_at_and_above or round_trip",
                                          f"--xcomsim-report={report}")  # fmt: skip
    output = result.stdout.str()
    assert "not claimed" not in output.split("xcomsim conformance verdict")[1].split("push-once")[0]
    cause = ("discovery failed: the backend's S3 bucket 'my-bucket' does not exist in the test's S3 (NoSuchBucket); "
             "create it in an autouse fixture of a conftest.py in tests/")  # fmt: skip
    assert f"  {cause}" in output, output[-3000:]
    assert re.search(r"^  offload-threshold\s+not run$", output, re.M), output[-3000:]
    assert f"      {CANNOT_TEST}{cause}" in output
    # values the backend would offload fail for the same cause: no round trip is judged either
    assert re.search(r"^  round-trip-exact\s+not run$", output, re.M), output[-3000:]
    assert "broken" not in output.split("xcomsim conformance verdict")[1]
    data = json.loads(report.read_text())
    by_name = {g["name"]: g for g in data["verdicts"][0]["guarantees"]}
    assert by_name["offload-threshold"]["state"] == "not run"
    assert by_name["offload-threshold"]["detail"].startswith(f"{CANNOT_TEST}{cause}")
    assert data["verdicts"][0]["discovered"].startswith(cause)
    project.runpytest_subprocess(*OPTIONS, "-k", "offload_at_and_above", f"--xcomsim-report={page}")
    html = page.read_text()
    row = re.search(r'<tr class="verdict" data-verdict="not run"><td>offload-threshold</td>.*?</tr>', html, re.S)
    assert row and ">not run</span>" in row.group(0) and "does not exist" in row.group(0), html[-3000:]


def test_a_kept_guarantee_shows_no_skip_reason_of_another_test_and_all_outputs_use_the_same_words():
    """One test of offload-threshold passed, another was skipped as not claimed: the badge and the detail agree."""
    from xcomsim import html_report

    verdicts = Verdicts("b")
    verdicts.record("offload-threshold", "passed")
    verdicts.record("offload-threshold", "skipped", "not claimed: no offload declared")
    verdicts.record("push-once", "skipped", "not claimed (same as Airflow): a second push replaces the first")
    verdicts.expect("no-lost-claim")
    entries = {g["name"]: g for g in html_report.verdict_entries([verdicts])[0]["guarantees"]}
    assert entries["offload-threshold"]["state"] == "kept" and entries["offload-threshold"]["detail"] == ""
    assert entries["push-once"]["state"] == "not claimed (same as Airflow)"
    assert entries["no-lost-claim"]["detail"].startswith("not run: no test of it ran")
    verdicts.record("round-trip-exact", "passed")
    verdicts.record("round-trip-exact", "skipped", f"{CANNOT_TEST}discovery failed: no bucket")
    assert "      kept by the tests that ran; 1 test(s) not run: discovery failed: no bucket" in verdicts.table()
    table = verdicts.table()
    for name, entry in entries.items():
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(entry['state'])}$", table, re.M), table
        assert all(f"      {line}" in table for line in entry["detail"].splitlines())
    page = html_report.render({"verdicts": html_report.verdict_entries([verdicts])})
    assert ">not claimed (same as Airflow)</span>" in page and "not claimed: no offload declared" not in page
