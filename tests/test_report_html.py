"""The HTML report: one self-contained page, checked as markup and in a real (headless) browser.

The browser test needs Chromium (Debian's ``chromium``; ``.ci/run`` installs it) and skips,
saying so, where it is absent. It saves a screenshot and prints its path in the log; set
``XCOMSIM_ARTIFACTS`` to keep it somewhere CI collects.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xcomsim import html_report
from xcomsim.conformance.verdict import Verdicts

# A race as the scheduler prints it (docs/property-testing.md): two workers win one claim.
TIMELINE = """\
winners ['w0', 'w2']
step  worker     operation                          io
   0  w0         claim c                            sql borrow connection
   1  w0         claim c                            sql SELECT xcomsim_claim.status FROM xcomsim_claim
   2  w2         claim c                            sql borrow connection
   3  w2         claim c                            s3-503 injected
   4  w0         claim c                            sql UPDATE xcomsim_claim SET status
"""

BENCH = {
    "caveat": "Measured on fakes: not latency proxies.",
    "backends": [
        {"name": "airflow-db", "label": "Airflow BaseXCom", "payload_bytes": 1048576,
         "xcom_table_bytes_per_100_runs": 490_900_000, "push": {"p50_ms": 54.6}, "pull": {"p50_ms": 28.4, "p99_ms": 75.8}},
        {"name": "exclusive-s3", "label": "ExclusiveXCom -> S3", "payload_bytes": 1048576,
         "xcom_table_bytes_per_100_runs": 75_200, "push": {"p50_ms": 82.5}, "pull": {"p50_ms": 39.1, "p99_ms": 72.4}},
        {"name": "custom", "label": "team_xcom.TeamXCom", "error": "NoSuchBucket: The specified bucket does not exist"},
    ],
}  # fmt: skip


class _Elements(HTMLParser):
    """Tags with their attributes and classes, enough to check structure without a DOM library."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, tag: str, cls: str | None = None, **attrs: str) -> list[dict[str, str]]:
        found = []
        for name, a in self.tags:
            if name != tag or (cls and cls not in a.get("class", "").split()):
                continue
            if all(a.get(k) == v for k, v in attrs.items()):
                found.append(a)
        return found


def _parsed(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def _verdicts() -> Verdicts:
    verdicts = Verdicts("team_xcom.TeamXCom")
    # Recorded in the order the tests happened to run (pytest-randomly), not the table's.
    verdicts.record("no-lost-claim", "skipped", "not claimed: override the 'claim_store' fixture")
    verdicts.record_failure(("exactly-one-claim-winner",), "InvariantViolation: [exactly-one-claim-winner]\n" + TIMELINE
                            + "\nxcomsim: first failure at example 7",
                            replay="pytest --xcomsim --xcomsim-replay 'tests/test_mine.py::TestMine::test_claim_races'")  # fmt: skip
    verdicts.record("push-once", "passed")
    verdicts.discovered = "discovered: stores every value inline (probed up to 1048576 B)"
    verdicts.record_inherited("push-once", "inherited from Airflow's inline path: inf: Airflow raises ValueError")
    return verdicts


@pytest.fixture
def page_data(run_dag) -> dict:
    from airflow.sdk import DAG, task

    with DAG("report_demo", start_date=datetime(2024, 1, 1), schedule=None) as dag:

        @task
        def produce():
            return 3

        @task
        def fail(value):
            raise ValueError(f"refusing {value}")

        fail(produce())

    result = run_dag(dag)
    # The verdict keeps the whole failure beside its short counterexample: the timeline is read from it.
    verdicts = html_report.verdict_entries([_verdicts()])
    return {
        "title": "xcomsim report: demo",
        "runs": [html_report.run_entry("tests/test_report_html.py::demo", result)],
        "verdicts": verdicts,
        "bench": BENCH,
    }


def test_timeline_is_parsed_into_lanes_with_the_violating_step_last():
    steps = html_report.parse_timeline(TIMELINE)
    assert [s["worker"] for s in steps] == ["w0", "w0", "w2", "w2", "w0"]
    assert [s["violating"] for s in steps] == [False, False, False, False, True]
    assert steps[3]["fault"] == "s3-503"


def test_verdicts_come_in_the_terminal_tables_order_with_its_lines(page_data):
    """The table's fixed order (push-once first), whatever order the tests ran in; the same lines as the terminal's."""
    (backend,) = page_data["verdicts"]
    assert [g["name"] for g in backend["guarantees"]] == [e.name for e in _verdicts().ordered()]
    assert [g["name"] for g in backend["guarantees"]] == ["push-once", "exactly-one-claim-winner", "no-lost-claim"]
    page = html_report.render(page_data)
    rows = [a["data-verdict"] for a in _parsed(page).having("tr", "verdict")]
    assert rows == ["kept", "broken", "not claimed"], rows
    assert "stores every value inline" in page and "inherited from Airflow&#x27;s inline path: inf" in page
    assert "first failure at example 7" in page


def test_page_is_self_contained_and_holds_every_section(page_data):
    page = html_report.render(page_data)
    doc = _parsed(page)
    assert not doc.having("script") and not doc.having("link") and not doc.having("img")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert len(doc.having("div", "run", **{"data-state": "failed"})) == 1
    assert len(doc.having("tr", "task")) == 2 and "ValueError: refusing 3" in page
    assert {a["data-verdict"] for a in doc.having("tr", "verdict")} == {"kept", "broken", "not claimed"}
    assert len(doc.having("g", "step")) == 5 and len(doc.having("g", "violating")) == 1 and doc.having("g", "fault")
    assert len(doc.having("svg", "chart")) == 2 and len(doc.having("g", "bar")) == 2 * 3 + 2
    assert "team_xcom.TeamXCom failed: NoSuchBucket" in page


def test_report_opens_in_a_headless_browser(page_data, tmp_path, request):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium; .ci/run installs it in CI)")
    page = html_report.write(tmp_path / "report.html", page_data)
    artifacts = Path(os.environ.get("XCOMSIM_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "xcomsim-report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--disable-extensions", "--window-size=1280,1800"]  # fmt: skip
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = _parsed(dom.stdout)  # what the browser built, not what was written
    assert len(rendered.having("tr", "verdict")) == 3 and len(rendered.having("g", "violating")) == 1
    assert len(rendered.having("svg", "chart")) == 2 and len(rendered.having("div", "run")) == 1
    done = subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (1280, 1800) and shot.stat().st_size > 20_000  # a page, not a blank frame
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"xcomsim report screenshot: {shot}")


def test_a_kit_counterexample_reaches_the_page_as_swim_lanes(clean_pytester):
    """A real kit run on a broken claim store: the page draws the interleaving the kit found and its replay."""
    clean_pytester.makepyfile(test_kit="""
import pytest
from xcomsim.conformance import XComBackendContract

@pytest.mark.xcomsim(backend="xcomsim.mutants.backends.CheckThenActClaimsXCom")
class TestCheckThenAct(XComBackendContract):
    pass
""")
    result = clean_pytester.runpytest_subprocess("--xcomsim", "-p", "no:randomly", "--xcomsim-profile=ci",
                                                 "-k", "test_claim_races", "--xcomsim-report=report.html")
    assert re.search(r"exactly-one-claim-winner\s+broken", result.stdout.str()), result.stdout.str()[-3000:]
    page = (clean_pytester.path / "report.html").read_text()
    doc = _parsed(page)
    assert len(doc.having("svg", "swimlanes")) == 1 and len(doc.having("g", "violating")) == 1, page[-3000:]
    assert len(doc.having("rect", "lane")) >= 2 and len(doc.having("g", "step")) >= 2  # a race: two workers
    (replay,) = [line for line in page.splitlines() if 'class="replay"' in line]
    assert "--xcomsim-backend" not in replay and "test_claim_races" in replay


def test_a_run_that_succeeded_in_a_test_that_failed_says_both(clean_pytester):
    """The page agrees with the terminal: the run's state and the test's outcome are shown apart."""
    clean_pytester.makepyfile(test_runs="""
from datetime import datetime

from airflow.sdk import DAG, task


def _dag(dag_id):
    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None) as dag:
        @task
        def produce():
            return 3
        produce()
    return dag


def test_fails_after_a_good_run(run_dag):
    assert run_dag(_dag("good_run")).succeeded
    assert False, "the test's own assertion"


def test_passes(run_dag):
    assert run_dag(_dag("other_run")).succeeded
""")
    result = clean_pytester.runpytest_subprocess("--xcomsim", "-p", "no:randomly", "--xcomsim-report=report.html")
    result.assert_outcomes(passed=1, failed=1)
    doc = _parsed((clean_pytester.path / "report.html").read_text())
    runs = {a["data-outcome"]: a["data-state"] for a in doc.having("div", "run")}
    assert runs == {"failed": "success", "passed": "success"}, runs


def test_a_broken_guarantee_without_a_race_has_its_replay_in_its_row_and_no_empty_counterexample():
    verdicts = Verdicts("pkg.MyXCom")
    verdicts.expect("round-trip-exact")
    verdicts.record_failure(("round-trip-exact",), "InvariantViolation: [round-trip-exact] pushed (1,) pulled [1]",
                            replay="cd /p && python -m pytest --xcomsim -k test_round_trip_is_exact")  # fmt: skip
    page = html_report.render({"verdicts": html_report.verdict_entries([verdicts])})
    doc = _parsed(page)
    assert not doc.having("div", "counterexample"), page  # nothing to draw: no heading over a lone replay line
    (row,) = doc.having("tr", "verdict")
    assert row["data-verdict"] == "broken" and 'class="replay"' in page and "test_round_trip_is_exact" in page
