"""The whole mutant catalogue through the kit, in a pytest run of its own: each caught by its invariant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xcomsim.mutants.catalogue import CATALOGUE, NOT_YET_BY_THE_KIT, contract_module, selection, verdicts
from xcomsim.mutants.airflow_keys import AIRFLOW_KEYS
from xcomsim.mutants.callers import CALLERS
from xcomsim.mutants.fencing import FENCING
from xcomsim.mutants.hardening import HARDENING


@pytest.mark.long
@pytest.mark.once
def test_every_mutant_is_caught_by_its_invariant_within_the_budget(clean_pytester, monkeypatch):
    root = Path(__file__).resolve().parent.parent  # import xcomsim from this checkout, not the installed one
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), str(root / "tests")]))
    assert len(CATALOGUE) >= 16 and len(set(CATALOGUE.values())) == 15  # every invariant has a mutant
    clean_pytester.makepyfile(test_catalogue=contract_module())
    result = clean_pytester.runpytest_subprocess(
        "--xcomsim", "-p", "no:randomly", "--xcomsim-profile=ci", "-k", selection()
    )
    found = verdicts(result.stdout.str())
    missed = {path: verdict for path, (verdict, _) in found.items() if verdict != "broken"}
    assert set(found) == set(CATALOGUE), result.stdout.str()[-3000:]
    assert not missed, f"not caught by the intended invariant: {missed}"
    # The ci profile's budget is 100 examples; every mutant fell well within it.
    assert all(first is not None and first <= 100 for _, first in found.values()), found


def test_the_selection_keeps_only_each_mutants_own_invariant():
    for index, invariant in enumerate(CATALOGUE.values()):
        assert f"(TestMutant{index:02d}) and (" in selection()
    assert "TestMutant1)" not in selection()  # zero-padded: -k must not match TestMutant1 inside TestMutant10


def test_every_former_hole_of_the_reference_is_in_the_catalogue_or_named_as_not_yet_caught():
    for path, guarantee in {**HARDENING, **CALLERS, **FENCING, **AIRFLOW_KEYS}.items():
        assert (CATALOGUE.get(path) == guarantee) != (path in NOT_YET_BY_THE_KIT), path
