"""The soak's HTML report: the kit's verdict table, one lane per Celery worker, faults marked, violations named.

Rendered from a history written by hand (two workers, a retry replacing a committed value, a paused worker, a
kill between guard and row), as markup and, where Chromium is installed, in a headless browser.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from xcomsim.soak import checks, history, probe, report, tasks

PLAN = {"sizes": {"small": 200, "large": 3000, "attempt": 2048}}
CLAIMS = checks.Claims(push_once=True, scoping=True, claims=True, offload_threshold=None, sweeper=False)
RUN = "soak_00001"


def _task(pid: int, worker: str, try_number: int, t: float) -> dict:
    return {"op": "task", "phase": "begin", "pid": pid, "worker": worker, "t": t, "mono": 0, "dag_id": "d",
            "run_id": RUN, "task_id": "pushers", "map_index": 0, "try_number": try_number}  # fmt: skip


def _push(pid: int, worker: str, try_number: int, t: float) -> list[dict]:
    value = tasks.value_for(RUN, 0, "attempt", try_number, PLAN["sizes"])
    base = {"op": "push", "pid": pid, "worker": worker, "dag_id": "d", "run_id": RUN, "task_id": "pushers",
            "map_index": 0, "try_number": try_number, "key": "attempt", "digest": probe.digest(value), "mono": 0}  # fmt: skip
    return [{**base, "phase": "begin", "t": t}, {**base, "phase": "ok", "t": t + 0.2, "began": t}]


def _result() -> SimpleNamespace:
    events = [_task(11, "worker1", 1, 100.0), *_push(11, "worker1", 1, 100.5),
              _task(12, "worker1", 1, 100.2),  # a second process at once on worker1: a second row
              _task(21, "worker2", 2, 130.0), *_push(21, "worker2", 2, 130.5),
              {"op": "nemesis", "fault": "kill-before-row", "coordinate": f"d/{RUN}/pushers/1/small", "pid": 12,
               "worker": "worker1", "t": 101.0, "mono": 0}]  # fmt: skip
    faults = [{"t": 110.0, "fault": "pause", "target": "worker1", "ended": 125.0, "processes": 4},
              {"t": 120.0, "fault": "restart", "target": "redis-server", "ended": 126.0}]  # fmt: skip
    found = history.build(sorted(events, key=lambda e: e["t"]), faults)
    value = tasks.value_for(RUN, 0, "attempt", 2, PLAN["sizes"])
    rows = [{"dag_id": "d", "run_id": RUN, "task_id": "pushers", "map_index": 0, "key": "attempt", "value": value,
             "digest": probe.digest(value), "try": 2}]  # fmt: skip
    judged = checks.judge(found, {"rows": rows, "objects": {}, "task_instances": [], "backend": "team.TeamXCom"},
                          PLAN, CLAIMS)  # fmt: skip
    return SimpleNamespace(judged=judged, history=found, faults=faults, figures={"runs_per_minute": 8.5})


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, tag: str, cls: str, **attrs: str) -> list[dict[str, str]]:
        return [a for name, a in self.tags if name == tag and cls in a.get("class", "").split()
                and all(a.get(k) == v for k, v in attrs.items())]  # fmt: skip


def _tags(page: str) -> _Tags:
    parsed = _Tags()
    parsed.feed(page)
    return parsed


def test_a_soak_page_has_a_lane_per_worker_its_faults_and_the_operations_that_break_a_guarantee(tmp_path: Path):
    result = _result()
    assert checks.broken(result.judged) == ["retry-rule"]  # TeamXCom declares push-once across tries
    page = report.write(tmp_path / "soak.html", result).read_text()
    doc = _tags(page)
    assert "xcomsim soak: team.TeamXCom" in page
    verdicts = {a["data-verdict"] for a in doc.having("tr", "verdict")}
    assert "broken" in verdicts and "kept" in verdicts
    lanes = doc.having("rect", "lane")
    assert [a["data-worker"] for a in lanes] == ["worker1", "worker1", "worker2"]  # two processes at once: two rows
    faults = [a["data-fault"] for a in doc.having("g", "nemesis")]
    assert faults == ["kill-before-row", "pause", "restart"]
    assert len(doc.having("g", "op")) == 2 and len(doc.having("g", "violating")) == 2
    violations = doc.having("tr", "violation")
    assert [a["id"] for a in violations] == ["op-0", "op-1"]
    assert "push &#x27;attempt&#x27; of pushers[0] soak_00001" in page and "worker2/pid 21 try 2" in page
    assert "violating operations of the history: #0, #1" in page


def test_a_soak_page_opens_in_a_headless_browser(tmp_path: Path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium; .ci/run installs it in CI)")
    page = report.write(tmp_path / "soak.html", _result())
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--no-first-run", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = _tags(dom.stdout)
    assert len(rendered.having("rect", "lane")) == 3 and len(rendered.having("g", "nemesis")) == 3
    assert len(rendered.having("g", "violating")) == 2


def test_the_summary_counts_the_faults_tasks_injected_on_themselves():
    from xcomsim.soak import run

    r = _result()
    result = run.Result(r.judged, r.history, {}, {}, {}, r.faults)
    line = next(x for x in run.describe(result).splitlines() if x.startswith("faults injected"))
    assert line == "faults injected: 3 (kill-before-row, pause, restart)"
    assert [f["fault"] for f in run.as_json(result)["faults"]] == ["pause", "restart", "kill-before-row"]
