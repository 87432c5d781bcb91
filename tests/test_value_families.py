"""Value families (``xcomsim.strategies``), discovery along each dimension, and the failure line's difference."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcomsim.strategies import (
    airflow_types,
    backend_constants,
    counted_values,
    family_edges,
    nested_values,
    reference_variants,
    sized_values,
    value_families,
)


def test_every_type_family_airflow_carries_is_an_edge_and_the_ones_it_cannot_are_left_out():
    from xcomsim.checks import same
    from xcomsim.compat.names import deserialize, serialize

    types = airflow_types()
    # UUID from Airflow 3.2 (3.1's serde has no serializer for it)
    assert {"tuple", "set", "frozenset", "datetime", "date", "timedelta", "Decimal", "dataclass"} <= set(types)
    assert "bytes" not in types  # serde has no serializer for bytes: no round trip can be held to it
    edges = family_edges(sizes=False)
    for name, make in types.items():
        assert any(type(e) is type(make(0)) for e in edges), name
        value = make(3)
        assert same(deserialize(serialize(value)), value), name  # what Airflow itself keeps
    assert any(isinstance(e, Decimal) for e in edges)
    assert any(isinstance(e, uuid.UUID) for e in edges) == ("UUID" in types)


def test_sizes_counts_and_depths_reach_their_ceilings():
    from xcomsim.strategies import serialized_size

    seen_sizes, seen_counts, seen_depths = [], [], []

    @settings(max_examples=300, database=None, derandomize=True)
    @given(st.data())
    def draw(data):
        seen_sizes.append(serialized_size(data.draw(sized_values(ceiling=20_000))))
        seen_counts.append(len(data.draw(counted_values(max_items=3000))))
        value, depth = data.draw(nested_values(max_depth=40)), 0
        while isinstance(value, (list, tuple, dict)):
            value, depth = (next(iter(value.values())) if isinstance(value, dict) else value[0]), depth + 1
        seen_depths.append(depth)

    draw()
    assert min(seen_sizes) <= 4 and max(seen_sizes) > 10_000
    assert 0 in seen_counts and max(seen_counts) > 1000
    assert min(seen_depths) <= 1 and max(seen_depths) > 20


def test_constants_are_mined_from_the_backends_own_module_not_from_airflow_or_docstrings():
    from corpus.snapshot_marker import SnapshotXCom

    from xcomsim.strategies._internal.families import constant_edges, marker_keys

    constants = backend_constants(SnapshotXCom)
    assert "__snapshot__" in constants and "table" in constants
    assert not any("Airflow 3 backend" in c for c in constants)  # the module docstring is not a constant
    assert marker_keys(constants)[0] == "__snapshot__"  # marker-like first
    assert {"__snapshot__": True, "value": 1} in constant_edges(constants)
    from xcomsim.backend import ExclusiveXCom

    assert backend_constants(ExclusiveXCom) == ()  # xcomsim's own library and Airflow are not mined


def test_reference_variants_alter_each_string_of_a_learned_row():
    row = {"kind": "s3", "bucket": "b", "key": "xcom/d/r/t/-1/k.json"}
    variants = reference_variants(row)
    assert variants[0] == row and {"kind": "s3", "bucket": "b", "key": "xcom/d/r/t/-1/k.abcd"} in variants
    assert reference_variants("s3://b/xcom/0123456789") == ["s3://b/xcom/0123456789", "s3://b/xcom/012345abcd"]
    assert reference_variants(None) == []


def test_value_families_draws_from_the_backends_constants():
    found = []

    @settings(max_examples=200, database=None, derandomize=True)
    @given(value_families(("__marker__",), None, ceiling=512, max_items=100))
    def draw(value):
        found.append(value)

    draw()
    assert any(isinstance(v, dict) and "__marker__" in v for v in found)
    assert any(isinstance(v, (tuple, set, frozenset)) for v in found)


def test_the_failure_line_shows_the_first_differing_span_not_the_middle_cut_out():
    from xcomsim.conformance.round_trip import difference
    from xcomsim.conformance.verdict import Verdicts

    pushed, pulled = ("a" * 300, (1, 2)), ["a" * 300, [1, 2]]
    line = difference(pushed, pulled)
    assert line.startswith("pushed ('aaa") and ", pulled ['aaa" in line and "first difference at character 0" in line
    tail = difference(["x" * 500, (1, 2)], ["x" * 500, [1, 2]])
    assert "(1, 2)" in tail and "[1, 2]" in tail and " ... " not in tail  # the span where they differ, whole
    assert difference((1,), [1]) == "pushed (1,), pulled [1]"
    verdicts = Verdicts("b")
    verdicts.record_failure(("round-trip-exact",), f"E   AssertionError: [round-trip-exact] {tail}; Airflow keeps it")
    assert "(1, 2)" in verdicts.table() and "[1, 2]" in verdicts.table()


@pytest.mark.parametrize(
    ("typed", "size"),
    [(None, (16 << 20) + 1), ("1048577", 1048577), ("16MiB+1", (16 << 20) + 1), ("64 KiB", 65536)],
)
def test_the_probe_ceiling_is_read_from_the_option(typed, size):
    from xcomsim.conformance.kit import probe_ceiling

    assert probe_ceiling(typed) == size


def test_a_bad_probe_ceiling_is_a_usage_error_naming_it():
    from xcomsim.conformance.kit import probe_ceiling

    with pytest.raises(pytest.UsageError, match=r"--xcomsim-probe-max='lots': a size of 2 bytes or more"):
        probe_ceiling("lots")


@pytest.mark.parametrize(
    ("backend", "line"),
    [
        ("xcomsim.mutants.families.CountOffloadXCom", "offloads lists > 50 items to s3://xcomsim/mutant/rows/; inline otherwise"),
        ("xcomsim.mutants.families.OneMiBTutorialXCom", "offloads >= 1048577 B to s3://xcomsim/mutant/big/; inline otherwise"),
        ("xcomsim.mutants.families.DecimalAsFloatXCom", "stores every value inline (probed: 16777217 B, 4096 items, 64 levels, "),
    ],
)
@pytest.mark.usefixtures("fixed_mutant_bucket")
def test_discovery_finds_what_triggers_offload_beyond_byte_size(xcomsim_simulation, backend, line):
    """An item count, a threshold past 1 MiB (where the old probes stopped), or nothing up to the ceiling."""
    from xcomsim.conformance.discovery import discover

    with xcomsim_simulation.environment(backend=backend) as env:
        found = discover(env)
    assert found.describe().startswith(f"discovered: {line}"), found.describe()
    if "lists" in line:
        assert found.counts == {"list": 51} and found.threshold is None
        value = found.offloaded_value(0)
        assert isinstance(value, list) and len(value) == 51 and found.offloaded_value(1) != value


@pytest.mark.xcomsim(backend="corpus.parquet_frames.ParquetS3XCom")
def test_discovery_finds_a_type_trigger_and_the_offload_tests_use_it(xcomsim_env):
    pandas = pytest.importorskip("pandas")
    from xcomsim.conformance.discovery import discover

    xcomsim_env.s3.create_bucket(Bucket="frames-xcom")
    found = discover(xcomsim_env)
    assert found.describe() == "discovered: offloads every DataFrame to s3://frames-xcom/frames/; inline otherwise"
    assert isinstance(found.offloaded_value(0), pandas.DataFrame)
