"""The verdict table: each guarantee kept, broken (with its counterexample) or not claimed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KEPT, BROKEN, NOT_CLAIMED = "kept", "broken", "not claimed"


@dataclass
class GuaranteeVerdict:
    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    counterexample: str = ""
    reason: str = ""
    first_failure: int | None = None  # the example at which a property first failed, if it said

    @property
    def verdict(self) -> str:
        if self.failed:
            return BROKEN
        return KEPT if self.passed else NOT_CLAIMED


@dataclass
class Verdicts:
    backend: str = ""
    guarantees: dict[str, GuaranteeVerdict] = field(default_factory=dict)

    def record(self, name: str, outcome: str, detail: str = "") -> None:
        entry = self.guarantees.setdefault(name, GuaranteeVerdict(name))
        if outcome == "passed":
            entry.passed += 1
        elif outcome == "failed":
            entry.failed += 1
            entry.counterexample = entry.counterexample or _counterexample(detail)
            first = _FIRST.search(detail)
            if first and entry.first_failure is None:
                entry.first_failure = int(first.group(1))
        else:
            entry.skipped += 1
            entry.reason = entry.reason or detail

    def record_failure(self, names: tuple[str, ...], detail: str) -> None:
        """A failed test of several guarantees breaks the one its ``[invariant]`` message names, else all."""
        named = [n for n in names if f"[{n}]" in detail]
        for name in named or names:
            self.record(name, "failed", detail)

    def table(self) -> str:
        lines = [f"xcomsim conformance verdict{f' for {self.backend}' if self.backend else ''}:"]
        width = max((len(n) for n in self.guarantees), default=10) + 2
        for name, entry in self.guarantees.items():
            found = f" (first failure at example {entry.first_failure})" if entry.first_failure else ""
            lines.append(f"  {name:<{width}}{entry.verdict}{found}")
            if entry.verdict == BROKEN and entry.counterexample:
                lines += [f"      {line}" for line in entry.counterexample.splitlines()]
            elif entry.verdict == NOT_CLAIMED and entry.reason:
                lines.append(f"      {entry.reason}")
        return "\n".join(lines)


_TELLING = ("Error:", "Failed:", "DID NOT RAISE", "Failing test case", "Draw ", "reproduce_failure",
            "succeeded after", "was replaced", "won claim", "Violation: [", "state = ", "state.", "faults injected")
_FIRST = re.compile(r"xcomsim: first failure at example (\d+)")
_ARGUMENT = re.compile(r"^\w+=.*,$")  # a falsifying example's arguments


def _counterexample(detail: str, limit: int = 12) -> str:
    """The informative lines of a failure: the falsifying example, the story, the assertion."""
    seen: list[str] = []
    for raw in detail.splitlines():
        line = raw.strip().lstrip("|E").strip()
        telling = any(mark in line for mark in _TELLING) or _ARGUMENT.match(line)
        line = line.replace("xcomsim.checks.registry.", "")
        if len(line) > 160:
            line = f"{line[:120]} ... {line[-30:]}"
        if line and telling and line not in seen:
            seen.append(line)
    return "\n".join(seen[:limit]) or detail.strip().splitlines()[-1] if detail.strip() else ""
