"""The invariants checked against a workload's history and what landed in the stores.

Each invariant is a function from an ``Observation`` to a list of violations
(plain sentences); an empty list means it held. Checks read what actually
happened (the history of finished operations, in the order they finished, and
the ``xcom`` rows as stored), never the backend's opinion of itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xcomsim.scheduler.workload import History
from xcomsim.strategies import Claim, Push, Release


@dataclass
class Observation:
    history: History
    stored_values: dict[str, Any] = field(default_factory=dict)  # key -> deserialised value in the xcom table


@dataclass(frozen=True)
class Invariant:
    name: str
    summary: str
    check: Callable[[Observation], list[str]]


def _push_once(obs: Observation) -> list[str]:
    problems = []
    first: dict[str, Any] = {}
    for step in obs.history.steps:
        if isinstance(step.op, Push) and step.error is None:
            if step.op.key in first:
                problems.append(
                    f"{step.worker}'s push of {step.op.key!r} (step #{step.index}) succeeded after "
                    f"{first[step.op.key][0]} had pushed it: the second push must raise"
                )
            else:
                first[step.op.key] = (step.worker, step.op.value)
    for key, (worker, value) in first.items():
        if key in obs.stored_values and obs.stored_values[key] != value:
            problems.append(
                f"the first value of {key!r} ({worker}: {value!r}) was replaced by {obs.stored_values[key]!r}"
            )
    return problems


def _exactly_one_claim_winner(obs: Observation) -> list[str]:
    problems = []
    holders: dict[str, str] = {}
    for step in obs.history.steps:
        if step.error is not None:
            continue
        if isinstance(step.op, Claim) and step.result:
            holder = holders.get(step.op.claim_id)
            if holder is not None and holder != step.worker:
                problems.append(
                    f"{step.worker} won claim {step.op.claim_id!r} (step #{step.index}) while {holder} held it"
                )
            holders[step.op.claim_id] = step.worker
        elif isinstance(step.op, Release) and step.result and holders.get(step.op.claim_id) == step.worker:
            del holders[step.op.claim_id]
    return problems


INVARIANTS: dict[str, Invariant] = {
    inv.name: inv
    for inv in (
        Invariant("push-once", "a second push of an XCom raises and the first value stays", _push_once),
        Invariant(
            "exactly-one-claim-winner", "no claim is won while another worker holds it", _exactly_one_claim_winner
        ),
    )
}


def violations(name: str, obs: Observation) -> list[str]:
    return INVARIANTS[name].check(obs)


def check_all(obs: Observation, names: list[str] | None = None) -> dict[str, list[str]]:
    return {name: INVARIANTS[name].check(obs) for name in (names or list(INVARIANTS))}


