"""Every mutant, by backend path, with the one invariant that must catch it."""

from __future__ import annotations

CATALOGUE: dict[str, str] = {
    "xcomsim.mutants.backends.CheckThenActClaimsXCom": "exactly-one-claim-winner",
    "xcomsim.mutants.backends.RedisGetThenSetClaimsXCom": "exactly-one-claim-winner",
    "xcomsim.mutants.backends.NoLeaseClaimsXCom": "no-lost-claim",
    "xcomsim.mutants.xcom.ReadThenWriteGuardXCom": "push-once",
    "xcomsim.mutants.xcom.OverwriteAllowedXCom": "push-once",
    "xcomsim.mutants.scope.PushScopeIgnoredXCom": "push-scope",
    "xcomsim.mutants.scope.PullScopeBypassXCom": "pull-scope",
    "xcomsim.mutants.xcom.ThresholdOffByOneXCom": "offload-threshold",
    "xcomsim.mutants.xcom.SizeBeforeSerialisationXCom": "offload-threshold",
    "xcomsim.mutants.xcom.TupleToListXCom": "round-trip-exact",
    "xcomsim.mutants.objectstorage.PurgeForgetsObjectXCom": "purge-leaves-no-orphan",
    "xcomsim.mutants.xcom.ReferenceBeforeObjectXCom": "no-dangling-reference",
    "xcomsim.mutants.liveness.UndoAfterLostReplyXCom": "no-dangling-reference",
    "xcomsim.mutants.liveness.GuardThenRowXCom": "retry-can-push",
    "xcomsim.mutants.liveness.PurgeWhateverRowNamesXCom": "purge-deletes-only-its-own",
    "xcomsim.mutants.liveness.ListThenDeleteSweeperXCom": "gc-safe-with-inflight-pushes",
    # The reference backend's own former holes (xcomsim.mutants.hardening), those the kit catches:
    "xcomsim.mutants.hardening.ForeignReferencePurgeXCom": "purge-deletes-only-its-own",
    "xcomsim.mutants.hardening.TrustedTaskIdXCom": "push-scope",
    "xcomsim.mutants.hardening.CallbackPullXCom": "pull-scope",
    "xcomsim.mutants.hardening.UnquotedKeyXCom": "pull-scope",
    "xcomsim.mutants.hardening.UndoAfterCommitXCom": "no-dangling-reference",
    "xcomsim.mutants.hardening.StaleGuardXCom": "retry-can-push",
    "xcomsim.mutants.hardening.LazySequencePullXCom": "pull-scope",
    "xcomsim.mutants.hardening.SkipmixinChannelXCom": "push-scope",
    "xcomsim.mutants.hardening.RacingSweepXCom": "gc-safe-with-inflight-pushes",
    "xcomsim.mutants.hardening.UnguardedSerializeXCom": "push-once",
    "xcomsim.mutants.hardening.UncheckedLeaseClaimsXCom": "exactly-one-claim-winner",
    # One per value family and discovery dimension (xcomsim.mutants.families):
    "xcomsim.mutants.families.CountOffloadXCom": "round-trip-exact",  # counts
    "xcomsim.mutants.families.DecimalAsFloatXCom": "round-trip-exact",  # types
    "xcomsim.mutants.families.DepthCappedXCom": "round-trip-exact",  # depth
    "xcomsim.mutants.families.MarkerKeyXCom": "round-trip-exact",  # constants of the backend's module
    "xcomsim.mutants.families.ReferenceDictXCom": "round-trip-exact",  # references: its own row shape
    "xcomsim.mutants.families.HundredKiloReaderXCom": "round-trip-exact",  # sizes past 100,000 B
    "xcomsim.mutants.families.OneMiBTutorialXCom": "purge-leaves-no-orphan",  # discovery past 1 MiB
    "xcomsim.mutants.families.MapIndexlessXCom": "round-trip-exact",  # mapped pushes
    "xcomsim.mutants.families.EveryRowIsAReferenceXCom": "reads-airflow-rows",  # Airflow's own rows
    # Its holes as a deployment and careless callers find them (xcomsim.mutants.callers, .fencing):
    "xcomsim.mutants.callers.UncheckedDeleteXCom": "push-scope",
    "xcomsim.mutants.callers.LooseMapIndexXCom": "push-once",
    "xcomsim.mutants.callers.GuardLeftOnRefusalXCom": "refusal-leaves-nothing",
    "xcomsim.mutants.fencing.WallClockGuardXCom": "fenced-tries",
    "xcomsim.mutants.fencing.WorkerClockClaimsXCom": "exactly-one-claim-winner",
    "xcomsim.mutants.fencing.StrictAcrossTriesXCom": "retry-can-push",
}

#: Former holes of the reference that the kit does not yet catch: its tests never change the store's
#: connection id between push and sweep (a reference-specific setting no stranger's backend has);
#: ``tests/test_backend_attacks.py`` catches it through a real DAG run.
NOT_YET_BY_THE_KIT = {
    "xcomsim.mutants.hardening.SpellingSweepXCom",
    # the kit's task instances run without Airflow's task runner, whose frames a callback's copy hides behind;
    # tests/test_backend_callers.py catches it through a real DAG run
    "xcomsim.mutants.callers.CopiedIdentityXCom",
    # the kit's races never delete a run and trigger it again under its run_id while a sweep lists;
    # tests/test_backend_fencing.py catches it through real DAG runs
    "xcomsim.mutants.fencing.UncheckedSweepXCom",
    # Airflow's own keys and code outside any task need operators, callbacks and the DAG processor's channel;
    # tests/test_backend_airflow_keys.py catches them through real DAG runs
    "xcomsim.mutants.airflow_keys.LinkKeysAsDataXCom",
    "xcomsim.mutants.airflow_keys.UncheckedOutsidePullXCom",
}

def contract_module(mutants: dict[str, str] | None = None) -> str:
    """A test module running the kit on every mutant (or those given), one contract class each."""
    lines = ["import pytest", "from xcomsim.conformance import XComBackendContract", ""]
    for index, path in enumerate(mutants or CATALOGUE):
        lines += [f"@pytest.mark.xcomsim(backend={path!r})", f"class TestMutant{index:02d}(XComBackendContract):",
                  "    pass", ""]  # fmt: skip
    return "\n".join(lines)


def selection(mutants: dict[str, str] | None = None) -> str:
    """A ``-k`` expression keeping, for each mutant, only the tests of the invariant meant to catch it."""
    from xcomsim.conformance import XComBackendContract

    parts = []
    for index, invariant in enumerate((mutants or CATALOGUE).values()):
        tests = " or ".join(XComBackendContract.checks_for(invariant))
        parts.append(f"(TestMutant{index:02d}) and ({tests})")
    return " or ".join(f"({p})" for p in parts)


def verdicts(output: str) -> dict[str, tuple[str, int | None]]:
    """From a run's output: per mutant, the verdict on its invariant and the example of its first failure.

    A check that is not a property (one deterministic scenario) fails at its first and only example: 1.
    """
    import re

    found: dict[str, tuple[str, int | None]] = {}
    tables = re.split(r"xcomsim conformance verdict for ", output)[1:]
    for table in tables:
        path, _, body = table.partition(":\n")
        invariant = CATALOGUE.get(path.strip())
        if invariant is None:
            continue
        line = re.search(rf"^\s+{re.escape(invariant)}\s+(kept|broken|not claimed)(?: \(first failure at example "
                         r"(\d+)\))?\s*$", body, re.M)  # fmt: skip
        if line is None:
            found[path.strip()] = ("missing", None)
        else:
            first = int(line.group(2)) if line.group(2) else (1 if line.group(1) == "broken" else None)
            found[path.strip()] = (line.group(1), first)
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m xcomsim.mutants.catalogue --runs 5``: median examples to the first failure, per mutant."""
    import argparse
    import statistics
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per mutant, each with its own random seed")
    parser.add_argument("--only", default="", help="only the mutants whose path contains this text")
    args = parser.parse_args(argv)
    mutants = {path: invariant for path, invariant in CATALOGUE.items() if args.only in path}
    firsts: dict[str, list[int | None]] = {path: [] for path in mutants}
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "test_catalogue.py").write_text(contract_module(mutants))
        for run in range(args.runs):
            command = [sys.executable, "-m", "pytest", "--xcomsim", "--xcomsim-profile=dev", "-p", "no:randomly",
                       "-p", "no:cacheprovider", f"--hypothesis-seed={run}", "-k", selection(mutants), "test_catalogue.py"]  # fmt: skip
            output = subprocess.run(command, cwd=folder, capture_output=True, text=True).stdout
            for path, (verdict, first) in verdicts(output).items():
                firsts[path].append(first if verdict == "broken" else None)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print(f"{'mutant':<52} {'invariant':<26} caught  median examples to first failure")
    for path, found in firsts.items():
        caught = [f for f in found if f is not None]
        median = statistics.median(caught) if caught else "-"
        print(f"{path.removeprefix('xcomsim.mutants.'):<52} {mutants[path]:<28} {len(caught)}/{len(found):<5} {median}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
