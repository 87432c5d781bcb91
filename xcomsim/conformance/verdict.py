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
        else:
            entry.skipped += 1
            entry.reason = entry.reason or detail

    def table(self) -> str:
        lines = [f"xcomsim conformance verdict{f' for {self.backend}' if self.backend else ''}:"]
        width = max((len(n) for n in self.guarantees), default=10) + 2
        for name, entry in self.guarantees.items():
            lines.append(f"  {name:<{width}}{entry.verdict}")
            if entry.verdict == BROKEN and entry.counterexample:
                lines += [f"      {line}" for line in entry.counterexample.splitlines()]
            elif entry.verdict == NOT_CLAIMED and entry.reason:
                lines.append(f"      {entry.reason}")
        return "\n".join(lines)


_TELLING = ("Error:", "Failed:", "DID NOT RAISE", "Failing test case", "Draw ", "reproduce_failure",
            "succeeded after", "was replaced", "won claim")
_ARGUMENT = re.compile(r"^\w+=.*,$")  # a falsifying example's arguments


def _counterexample(detail: str, limit: int = 12) -> str:
    """The informative lines of a failure: the falsifying example, the story, the assertion."""
    seen: list[str] = []
    for raw in detail.splitlines():
        line = raw.strip().lstrip("|E").strip()
        telling = any(mark in line for mark in _TELLING) or _ARGUMENT.match(line)
        if line and telling and line not in seen:
            seen.append(line)
    return "\n".join(seen[:limit]) or detail.strip().splitlines()[-1] if detail.strip() else ""
