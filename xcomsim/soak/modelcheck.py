"""The model checked against the real thing: the catalogue's mutants run through a soak, one after another.

One deployment; for each backend only Airflow's processes restart (the stores
stay), and each phase has DAGs and a history of its own, under the same seed's
workload and faults. A mutant is caught when the soak finds the guarantee the
catalogue names for it broken; the time to detection is from the start of its
phase's workload to the end of the first history operation that breaks it (an
end-state break, named by no operation, is found when the phase ends).

``SOAKABLE`` is the part of the catalogue a soak's workload can exercise; the
rest is listed in ``NOT_SOAKABLE`` with what the soak would need.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xcomsim.conformance.verdict import KEPT
from xcomsim.mutants.catalogue import CATALOGUE
from xcomsim.soak import run, workload
from xcomsim.soak.deployment import THRESHOLD, LocalDeployment, Settings
from xcomsim.soak.processes import signals_as_exit

REFERENCE = "xcomsim.backend.ExclusiveXCom"

SOAKABLE = (
    "xcomsim.mutants.backends.CheckThenActClaimsXCom",
    "xcomsim.mutants.backends.RedisGetThenSetClaimsXCom",
    "xcomsim.mutants.backends.NoLeaseClaimsXCom",
    "xcomsim.mutants.xcom.ReadThenWriteGuardXCom",
    "xcomsim.mutants.xcom.OverwriteAllowedXCom",
    "xcomsim.mutants.scope.PushScopeIgnoredXCom",
    "xcomsim.mutants.scope.PullScopeBypassXCom",
    "xcomsim.mutants.liveness.GuardThenRowXCom",
    "xcomsim.mutants.hardening.StaleGuardXCom",
    "xcomsim.mutants.hardening.RacingSweepXCom",
    "xcomsim.mutants.liveness.ListThenDeleteSweeperXCom",
    "xcomsim.mutants.fencing.StrictAcrossTriesXCom",
    "xcomsim.mutants.fencing.WorkerClockClaimsXCom",
    "xcomsim.mutants.families.MapIndexlessXCom",  # mapped pushers' offloaded values: not yet run through the soak
)

#: What a soak's workload lacks to exercise the rest of the catalogue (the kit catches them all).
NOT_SOAKABLE = {
    "xcomsim.mutants.xcom.ThresholdOffByOneXCom": "a value of exactly the threshold's size (the workload's sizes are drawn away from it)",
    "xcomsim.mutants.xcom.SizeBeforeSerialisationXCom": "a value whose escapes cross the threshold",
    "xcomsim.mutants.xcom.TupleToListXCom": "tuples in values (history digests are of JSON, which cannot tell them from lists)",
    "xcomsim.mutants.objectstorage.PurgeForgetsObjectXCom": "the Common IO provider's object storage ([common.io] xcom_objectstorage_path; the soak's deployment configures only the reference's store)",
    "xcomsim.mutants.xcom.ReferenceBeforeObjectXCom": "a crash between its row and its upload (the soak's kill point is before the row)",
    "xcomsim.mutants.liveness.UndoAfterLostReplyXCom": "a row write whose reply is lost (an API fault the nemesis lacks)",
    "xcomsim.mutants.liveness.PurgeWhateverRowNamesXCom": "forged rows (the kit writes them)",
    "xcomsim.mutants.hardening.ForeignReferencePurgeXCom": "forged rows (the kit writes them)",
    "xcomsim.mutants.hardening.TrustedTaskIdXCom": "a task pushing under another task's id",
    "xcomsim.mutants.hardening.CallbackPullXCom": "pulls from callbacks",
    "xcomsim.mutants.hardening.UnquotedKeyXCom": "URL characters in keys and run ids",
    "xcomsim.mutants.hardening.UnguardedSerializeXCom": "a task calling serialize_value itself",
    "xcomsim.mutants.hardening.UndoAfterCommitXCom": "a row write whose reply is lost (an API fault the nemesis lacks)",
    "xcomsim.mutants.hardening.LazySequencePullXCom": "pulls through a mapped XComArg",
    "xcomsim.mutants.hardening.SkipmixinChannelXCom": "branching (skipmixin_key) pushes",
    "xcomsim.mutants.hardening.UncheckedLeaseClaimsXCom": "claims with a lease of 0 or below",
    "xcomsim.mutants.fencing.WallClockGuardXCom": "a zombie try resumed between its guard and its row after its retry "
                                                  "pushed (the pause fault stops a worker at a random instant)",
    "xcomsim.mutants.callers.GuardLeftOnRefusalXCom": "a push Airflow's model refuses, then the same key again in the "
                                                      "same try",
    "xcomsim.mutants.callers.LooseMapIndexXCom": "a map index of another type (a bool, a numpy integer)",
    "xcomsim.mutants.callers.UncheckedDeleteXCom": "a task deleting another task's XCom",
    "xcomsim.mutants.families.CountOffloadXCom": "a list or tuple of more than 50 items (the workload pushes dicts)",
    "xcomsim.mutants.families.DecimalAsFloatXCom": "a `Decimal` value",
    "xcomsim.mutants.families.DepthCappedXCom": "a value nested deeper than 20 levels",
    "xcomsim.mutants.families.EveryRowIsAReferenceXCom": "rows Airflow writes itself (an operator's extra link), read back",
    "xcomsim.mutants.families.HundredKiloReaderXCom": "a value over 100,000 bytes (the workload's stay under 4 KiB)",
    "xcomsim.mutants.families.MarkerKeyXCom": "a dict with a `__xcom_snapshot__` key",
    "xcomsim.mutants.families.OneMiBTutorialXCom": "values over 1 MiB (the workload's stay under 4 KiB)",
    "xcomsim.mutants.families.ReferenceDictXCom": "a dict value shaped like its reference (`{\"__xcom_ref\": ...}`)",
}  # fmt: skip


@dataclasses.dataclass
class Detection:
    backend: str
    invariant: str | None  # the guarantee the catalogue names (None: the reference)
    broken: list[str]
    caught: bool
    seconds: float | None  # from the phase's workload start to the first operation that breaks ``invariant``
    runs: int | None  # DAG runs triggered by then
    runs_total: int
    verdicts: str
    kept: list[str] = dataclasses.field(default_factory=list)  # guarantees judged and kept
    unexercised: str = ""  # why the phase exercised a key of the backend not at all (its every push failed)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def detect(backend: str, result: run.Result) -> Detection:
    """Whether and when a phase's soak found the catalogue's guarantee for ``backend`` broken."""
    invariant = CATALOGUE.get(backend)
    broken = result.broken
    caught = invariant is not None and invariant in broken
    seconds = runs = None
    began = result.figures.get("workload_began")
    if caught and began is not None:
        ops = [result.history.operations[i] for i in result.judged.violating.get(invariant, [])]
        ends = [o.end if o.end is not None else o.start for o in ops]
        at = min(ends) if ends else max(e.get("ended") or time.time() for e in result.runs.values())
        seconds = round(max(0.0, at - began), 1)
        runs = sum(1 for e in result.runs.values() if e["triggered"] <= at)
    kept = [e.name for e in result.judged.verdicts.ordered() if e.verdict == KEPT]
    return Detection(backend, invariant, broken, caught, seconds, runs, len(result.runs), run.describe(result),
                     kept, "" if caught else unexercised(result))  # fmt: skip


#: Errors by which a backend refuses a push on purpose: the discipline at work, not a push that could not run.
REFUSALS = frozenset({"XComOverwriteError", "XComScopeError", "XComFencedError", "XComValueError"})


def unexercised(result: run.Result) -> str:
    """A key every push of which failed with an error that is no refusal (the backend could not reach its store,
    say): the soak exercised nothing of the backend there, and "not caught" would claim more than it saw."""
    by_key: dict[str, list[Any]] = {}
    for o in result.history.of("push"):
        if not o.fields.get("again"):  # a second push in a try is refused on purpose
            by_key.setdefault(str(o.fields.get("key")), []).append(o)
    for key, pushes in sorted(by_key.items()):
        failed = [o for o in pushes if o.outcome == "error" and o.error_type not in REFUSALS]
        if len(failed) == len(pushes):
            first = failed[0]
            return f"every push of {key!r} failed ({len(failed)}; {first.error_type}: {(first.error or '')[:100]})"
    return ""


def model_check(backends: list[str], options: run.Options, say: Callable[[str], None],
                drain: float = 90.0) -> list[Detection]:  # fmt: skip
    """Each backend in turn through the same seed's soak on one deployment."""
    unknown = [b for b in backends if b != REFERENCE and b not in CATALOGUE]
    if unknown:
        from xcomsim.soak.errors import SoakError

        raise SoakError(f"not in the mutant catalogue: {', '.join(unknown)}")
    skew = run.skew_for(options)
    deployment = LocalDeployment(Settings(backend=backends[0], workers=options.workers, skew_seconds=skew,
                                          extra_config=dict(options.config)))  # fmt: skip
    plan = workload.Plan.draw(options.seed, THRESHOLD, "kill" in options.faults)
    found: list[Detection] = []
    with signals_as_exit():
        try:
            say(f"starting a deployment (soak id {deployment.soak_id}) for {len(backends)} backend(s)")
            deployment.start()
            files = {i: workload.write_dags(deployment.dags_folder, f"{deployment.soak_id}-m{i}", plan)
                     for i in range(len(backends))}  # fmt: skip
            deployment.start_airflow()
            for index, backend in enumerate(backends):
                if index:
                    deployment.switch_backend(backend, deployment.data / f"history-{index}")
                say(f"[{index + 1}/{len(backends)}] {backend}")
                result = run.phase(deployment, options, f"{deployment.soak_id}-m{index}", plan, files[index], say,
                                   drain=drain)  # fmt: skip
                found.append(detect(backend, result))
                say(f"  {table([found[-1]]).splitlines()[-1]}")
        finally:
            if options.logs_to:
                deployment.save_logs(Path(options.logs_to))
            deployment.close()
    return found


def table(found: list[Detection]) -> str:
    """Markdown: mutant, the guarantee the kit catches it by, and the soak's verdict and time to detection."""
    lines = ["| backend | caught by the simulation (kit) | caught by the soak | time to detection | runs to detection "
             "| guarantees the soak found broken |", "|---|---|---|---:|---:|---|"]  # fmt: skip
    for d in found:
        name = d.backend.removeprefix("xcomsim.mutants.").removeprefix("xcomsim.backend.")
        kit = f"yes: `{d.invariant}`" if d.invariant else "(reference)"
        soak = ("yes" if d.caught else "no") if d.invariant else ("kept all" if not d.broken else "BROKEN")
        if not d.kept and not d.broken:  # nothing was judged: a harness problem, never a verdict
            soak = "not judged (empty history)"
        elif d.unexercised:  # nothing of it was exercised there: no claim either way
            soak = f"not exercised: {d.unexercised}"
        when = f"{d.seconds:.0f} s" if d.seconds is not None else "-"
        runs = f"{d.runs} of {d.runs_total}" if d.runs is not None else "-"
        lines.append(f"| `{name}` | {kit} | {soak} | {when} | {runs} | {', '.join(d.broken) or 'none'} |")
    return "\n".join(lines)
