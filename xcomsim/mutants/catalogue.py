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
}


def contract_module() -> str:
    """A test module running the kit on every mutant, one contract class each."""
    lines = ["import pytest", "from xcomsim.conformance import XComBackendContract", ""]
    for index, path in enumerate(CATALOGUE):
        lines += [f"@pytest.mark.xcomsim(backend={path!r})", f"class TestMutant{index:02d}(XComBackendContract):",
                  "    pass", ""]  # fmt: skip
    return "\n".join(lines)


def selection() -> str:
    """A ``-k`` expression keeping, for each mutant, only the tests of the invariant meant to catch it."""
    from xcomsim.conformance.kit import XComBackendContract

    parts = []
    for index, invariant in enumerate(CATALOGUE.values()):
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
