"""The verdict table: each guarantee kept, broken, inherited from Airflow, not claimed, or not run.

A guarantee is kept only if a test that judged it ran and passed; the model
test judges only what the backend claims (it says which). The table's order
is fixed, whatever order the tests ran in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

KEPT, BROKEN, NOT_CLAIMED, NOT_RUN = "kept", "broken", "not claimed", "not run"
# A skip reason starting with this says the kit could not test a guarantee the backend may well hold
# (discovery failed, or it could not learn what it needed): "not run", never "not claimed".
CANNOT_TEST = "not run: "
NEVER_RAN = "not run: no test of it ran (the run stopped early: -x, --maxfail, Ctrl-C; or its tests were deselected)"
ORDER = ("push-once", "round-trip-exact", "reads-airflow-rows", "push-scope", "pull-scope", "exactly-one-claim-winner", "no-lost-claim",
         "offload-threshold", "purge-leaves-no-orphan", "no-dangling-reference")  # fmt: skip


@dataclass
class GuaranteeVerdict:
    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    untestable: int = 0  # skips that say the kit could not test it (CANNOT_TEST)
    counterexample: str = ""
    reason: str = ""
    first_failure: int | None = None  # the example at which a property first failed, if it said
    inherited: list[str] = field(default_factory=list)  # failures Airflow's own BaseXCom shares
    shown_from_model: bool = False  # the counterexample shown is the model test's (a targeted one is clearer)
    detail: str = ""  # the whole failure the counterexample was cut from (its interleaving, for a report)
    replay: str | None = None  # the command that reruns that failure, when the plugin gave one

    @property
    def verdict(self) -> str:
        if self.failed:
            return BROKEN
        if self.passed:
            return KEPT
        return NOT_CLAIMED if self.skipped and not self.untestable else NOT_RUN

    @property
    def state(self) -> str:
        """The verdict in the words every output uses (terminal, HTML, JSON)."""
        verdict = self.verdict
        if verdict == BROKEN and self.first_failure:
            return f"{BROKEN} (first failure at example {self.first_failure})"
        if verdict == NOT_CLAIMED and "(same as Airflow)" in self.reason:
            return f"{NOT_CLAIMED} (same as Airflow)"
        return verdict

    def lines(self) -> list[str]:
        """What is said under the verdict: the counterexample, why it is not claimed or not run, Airflow's limits.

        A kept guarantee some of whose tests the kit could not run says so: kept by the tests that ran.
        """
        verdict = self.verdict
        if verdict == BROKEN:
            said = self.counterexample.splitlines()
        elif verdict == NOT_RUN:
            said = [self.reason if self.reason.startswith(CANNOT_TEST) else NEVER_RAN]
        elif verdict == NOT_CLAIMED:
            said = [self.reason] if self.reason else []
        else:
            said = [f"kept by the tests that ran; {self.untestable} test(s) {self.reason}"] if self.untestable else []
        return said + self.inherited

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "verdict": self.verdict, "state": self.state, "detail": "\n".join(self.lines()),
                "first_failure": self.first_failure if self.verdict == BROKEN else None, "replay": self.replay}


@dataclass
class Verdicts:
    backend: str = ""
    guarantees: dict[str, GuaranteeVerdict] = field(default_factory=dict)
    discovered: str = ""
    harness: list[str] = field(default_factory=list)  # failures of the harness, not of a guarantee

    def expect(self, name: str) -> None:
        """A collected test will judge ``name``: it is listed even if the run stops before it."""
        self.guarantees.setdefault(name, GuaranteeVerdict(name))

    def record(self, name: str, outcome: str, detail: str = "", from_model: bool = False,
               replay: str | None = None) -> None:
        entry = self.guarantees.setdefault(name, GuaranteeVerdict(name))
        if outcome == "passed":
            entry.passed += 1
        elif outcome == "failed":
            entry.failed += 1
            if not entry.counterexample or (entry.shown_from_model and not from_model):
                entry.counterexample, entry.shown_from_model = _counterexample(detail), from_model
                entry.detail, entry.replay = detail, replay
            first = _FIRST.search(detail)
            if first and entry.first_failure is None:
                entry.first_failure = int(first.group(1))
        else:
            entry.skipped += 1
            if detail.startswith(CANNOT_TEST):
                entry.untestable += 1
                entry.reason = entry.reason if entry.reason.startswith(CANNOT_TEST) else detail
            entry.reason = entry.reason or detail

    def record_inherited(self, name: str, line: str) -> None:
        """One line per way Airflow fails (the text after ``: Airflow``), with the shortest value shown."""
        entry = self.guarantees.setdefault(name, GuaranteeVerdict(name))
        outcome = line.partition(": Airflow ")[2] or line
        for index, known in enumerate(entry.inherited):
            if (known.partition(": Airflow ")[2] or known) == outcome:
                if len(line) < len(known):
                    entry.inherited[index] = line
                return
        entry.inherited.append(line)

    def record_failure(self, names: tuple[str, ...], detail: str, from_model: bool = False,
                       replay: str | None = None) -> None:
        """A failed test of several guarantees breaks the one its ``[invariant]`` message names, else all."""
        named = [n for n in names if f"[{n}]" in detail]
        harness = next((mark for mark in HARNESS_FAILURES if mark in detail), None)
        if not named and harness:
            self.harness.append(f"{harness} in a test of {', '.join(names)}: no verdict drawn from it")
            return
        for name in named or names:
            self.record(name, "failed", detail, from_model, replay)

    def record_harness(self, names: tuple[str, ...], problem: str) -> None:
        """A test the harness itself could not run (``harness_problem``): said under the table, no verdict."""
        self.harness.append(f"{problem} in a test of {', '.join(names)}: no verdict drawn from it")

    def ordered(self) -> list[GuaranteeVerdict]:
        rank = {name: index for index, name in enumerate(ORDER)}
        return sorted(self.guarantees.values(), key=lambda e: (rank.get(e.name, len(ORDER)), e.name))

    def table(self) -> str:
        lines = [f"xcomsim conformance verdict{f' for {self.backend}' if self.backend else ''}:"]
        if self.discovered:
            lines.append(f"  {self.discovered}")
        width = max((len(n) for n in self.guarantees), default=10) + 2
        for entry in self.ordered():
            lines.append(f"  {entry.name:<{width}}{entry.state}")
            lines += [f"      {line}" for line in entry.lines()]
        lines += [f"  harness problem: {line}" for line in self.harness]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """The table as data (the HTML report and the JSON one): the same states and lines, the same order."""
        return {"backend": self.backend, "discovered": self.discovered, "harness": list(self.harness),
                "guarantees": [entry.as_dict() for entry in self.ordered()]}  # fmt: skip


_PACKAGE = Path(__file__).resolve().parents[1]
_UNDER_TEST = (_PACKAGE / "backend", _PACKAGE / "mutants")  # backends: their errors are theirs


def harness_problem(error: BaseException | None) -> str | None:
    """The harness's own import failed (this Airflow lacks a module xcomsim reached for), or None.

    Told by where the failed import statement ran: in xcomsim's harness code (not in the reference backend
    or a mutant, which are backends under test, and not in the user's backend). Any other error is the test's.
    """
    if not isinstance(error, ImportError):
        return None
    where, tb = None, error.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.startswith("<"):
            where = Path(name).resolve()
        tb = tb.tb_next
    if where is None or not where.is_relative_to(_PACKAGE) or any(where.is_relative_to(p) for p in _UNDER_TEST):
        return None
    return f"{type(error).__name__}: {error} (at {where.relative_to(_PACKAGE.parent)})"


# Failures that say the test itself could not run as designed (Hypothesis saw the data generation
# change between runs; the scheduler found no worker able to go on), never that a guarantee broke.
HARNESS_FAILURES = ("FlakyStrategyDefinition", "SchedulerStuck", "HarnessStuck", "xcomsim harness problem")
_TELLING = ("Error:", "Failed:", "DID NOT RAISE", "Failing test case", "Draw ", "reproduce_failure",
            "succeeded after", "was replaced", "won claim", "Violation: [", "state = ", "state.", "faults injected",
            "declared ", "cannot be pulled")  # fmt: skip
# A test's story under its error (what was done before the check), told by how the line starts: the
# same words also appear in the traceback's source lines and locals, which must not be kept.
_STORY = ("after XCom.delete", "after the sweeper ran")
_FIRST = re.compile(r"xcomsim: first failure at example (\d+)")
_ARGUMENT = re.compile(r"^\w+=.*,$")  # a falsifying example's arguments


def _counterexample(detail: str, limit: int = 40) -> str:
    """The informative lines of a failure, in order and repeats kept: a story may push the same key twice."""
    kept: list[str] = []
    example = False  # inside a falsifying example's arguments
    for raw in detail.splitlines():
        line = raw.strip().lstrip("|E").strip()
        example = ("Falsifying example" in line or "Failing test case" in line) or (example and line != ")")
        telling = (any(mark in line for mark in _TELLING) or line.startswith(_STORY)
                   or (example and _ARGUMENT.match(line)))  # fmt: skip
        line = line.replace("xcomsim.checks.registry.", "")
        if " pulled " in line and len(line) > 200:  # a difference, already cut to where it starts: keep it whole
            line = line[:400] + (" ..." if len(line) > 400 else "")
        elif len(line) > 200:
            line = f"{line[:150]} ... {line[-45:]}"
        if line and telling:
            kept.append(line)
    if len(kept) > limit:
        kept = kept[: limit - 1] + [f"... ({len(kept) - limit + 1} more lines in the failure above)"]
    return "\n".join(kept) or (detail.strip().splitlines()[-1] if detail.strip() else "")
