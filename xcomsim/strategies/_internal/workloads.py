"""Workloads: several workers, each a short sequence of operations on shared XComs and claims."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st


@dataclass(frozen=True)
class Push:
    key: str
    value: object

    def __str__(self) -> str:
        return f"push {self.key}={_short(self.value)}"


@dataclass(frozen=True)
class Pull:
    key: str

    def __str__(self) -> str:
        return f"pull {self.key}"


@dataclass(frozen=True)
class Claim:
    claim_id: str
    lease_seconds: float | None = None

    def __str__(self) -> str:
        return f"claim {self.claim_id}" + (f" lease {self.lease_seconds}s" if self.lease_seconds else "")


@dataclass(frozen=True)
class Release:
    claim_id: str

    def __str__(self) -> str:
        return f"release {self.claim_id}"


@dataclass(frozen=True)
class Delete:
    key: str

    def __str__(self) -> str:
        return f"delete {self.key}"


@dataclass(frozen=True)
class Retry:
    """End this try as failed and start the next one (Airflow clears the try's keys first)."""

    def __str__(self) -> str:
        return "retry"


@dataclass(frozen=True)
class Wait:
    """Time passes: the workload's clock (the claim store's) moves on, so leases can expire."""

    seconds: float

    def __str__(self) -> str:
        return f"wait {self.seconds}s"


@dataclass(frozen=True)
class Crash:
    """The worker dies here: its remaining operations never run, nothing is cleaned up."""

    def __str__(self) -> str:
        return "crash"


@dataclass(frozen=True)
class Sweep:
    """Run the backend's sweeper (its garbage collector of unreferenced objects), concurrently with the rest."""

    def __str__(self) -> str:
        return "sweep"


@dataclass(frozen=True)
class Takeover:
    """Airflow declares the running try over (a zombie: its heartbeat timed out) and starts the next one here.

    The other workers go on as the earlier try, in flight beside its retry.
    """

    def __str__(self) -> str:
        return "next try (the others are now a zombie of the earlier one)"


Operation = Push | Pull | Claim | Release | Delete | Retry | Wait | Crash | Sweep | Takeover


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} chars)"


def operations(
    keys: list[str], claim_ids: list[str], values: st.SearchStrategy[object], leases: bool = True
) -> st.SearchStrategy[Operation]:
    parts: list[st.SearchStrategy[Operation]] = []
    if keys:
        key = st.sampled_from(keys)
        parts += [st.builds(Push, key, values), st.builds(Pull, key), st.builds(Delete, key)]
    if claim_ids:
        claim = st.sampled_from(claim_ids)
        parts += [st.builds(Claim, claim), st.builds(Release, claim)]
        if leases:  # short enough for real time; a ManualClock makes any scale instant
            parts += [st.builds(Claim, claim, st.sampled_from([0.05, 0.5])), st.builds(Wait, st.sampled_from([0.1, 1.0]))]
    parts += [st.just(Retry()), st.just(Crash())]
    return st.one_of(*parts)


def workloads(
    workers: int | tuple[int, int] = (2, 4),
    keys: tuple[str, ...] = ("k",),
    claim_ids: tuple[str, ...] = ("c",),
    values: st.SearchStrategy[object] | None = None,
    max_ops: int = 4,
    leases: bool = True,
) -> st.SearchStrategy[list[list[Operation]]]:
    """A list per worker of its operations, in order (``leases``: claims with leases, and ``Wait``)."""
    low, high = (workers, workers) if isinstance(workers, int) else workers
    values = values if values is not None else st.integers(min_value=0, max_value=1000)
    ops = operations(list(keys), list(claim_ids), values, leases)
    return st.integers(min_value=low, max_value=high).flatmap(
        lambda n: st.lists(st.lists(ops, min_size=1, max_size=max_ops), min_size=n, max_size=n)
    )
