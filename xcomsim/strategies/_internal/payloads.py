"""Values Airflow's serde round-trips, and values sized at a backend's offload threshold."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

# Airflow's serde handles no bytes; surrogates cannot be encoded as UTF-8.
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_keys = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)


def _scalars(infinities: bool = True) -> st.SearchStrategy[Any]:
    specials = [float("inf"), float("-inf"), -0.0, 2**53 + 1.0] if infinities else [-0.0, 2**53 + 1.0]
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**128), max_value=2**128),
        st.floats(allow_nan=False, allow_infinity=infinities),  # NaN != NaN: compared separately by round-trip checks
        st.sampled_from(specials),
        _text,
        st.datetimes(
            min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
        ),
        st.timedeltas(min_value=timedelta(days=-10_000), max_value=timedelta(days=10_000)),
    )


def serde_values(max_leaves: int = 20, infinities: bool = True) -> st.SearchStrategy[Any]:
    """Nested dicts (str keys), lists, tuples and sets of every scalar kind serde keeps exact.

    ``infinities=False``: no ``inf``/``-inf``, which Airflow's own inline path (JSON) cannot carry.
    """
    return st.recursive(
        _scalars(infinities),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(_keys, children, max_size=4),
            st.frozensets(st.integers(), max_size=4).map(set),
        ),
        max_leaves=max_leaves,
    )


def serialized_size(value: Any) -> int:
    """Bytes of the value's serialised JSON: the size a threshold is compared with."""
    from xcomsim.compat.names import serialize

    return len(json.dumps(serialize(value), ensure_ascii=False, separators=(",", ":")).encode())


def sized_string(size: int) -> str:
    """A str whose serialised size is exactly ``size`` (>= 2: the quotes)."""
    if size < 2:
        raise ValueError("a serialised str is at least 2 bytes (its quotes)")
    return "x" * (size - 2)


def threshold_sizes(threshold: int, far: int = 16) -> st.SearchStrategy[int]:
    """The sizes that matter around ``threshold``: t-1, t, t+1, the minimum, and far above."""
    return st.sampled_from(sorted({max(2, threshold - 1), max(2, threshold), threshold + 1, 2, threshold * far}))


def payloads_at_threshold(threshold: int) -> st.SearchStrategy[str]:
    return threshold_sizes(threshold).map(sized_string)


def utf8_sized_string(size: int, char: str = "é") -> str:
    """A str of ``char`` whose serialised JSON is ``size`` UTF-8 bytes (``size + 1`` when it cannot be exact)."""
    if size < 2:
        raise ValueError("a serialised str is at least 2 bytes (its quotes)")
    return char * -(-(size - 2) // len(char.encode()))


LOOKALIKE_STRINGS = (
    "s3://data-lake/x.parquet", "s3://xcomsim/xcom/not-mine", "gs://bucket/object.json", "redis://localhost:6379/0",
    "redis:xcom:key", "file:///tmp/x.json", "xcom_s3://run/key", "s3_xcom_00000000-0000-0000-0000-000000000000",
)


def reference_lookalikes(learned: tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
    """User values that look like references: URIs, the backend's own learned format, reference-shaped dicts.

    ``learned``: rows the backend was seen to write for offloaded values; a user may push one as a value.
    """
    texts = tuple(r for r in learned if isinstance(r, str))
    strings = st.sampled_from(LOOKALIKE_STRINGS + texts)
    edited = strings.map(lambda s: s[:-4] + "abcd" if len(s) > 8 else s + "/x")
    dicts = st.builds(lambda k, v: {k: v}, st.sampled_from(["__s3_uri", "__xcom_ref", "uri", "key", "path"]), strings)
    pair = st.fixed_dictionaries({"bucket": st.just("xcomsim"), "key": strings})
    as_written = [st.sampled_from(learned)] if learned else []
    return st.one_of(strings, edited, dicts, pair, st.tuples(strings, st.integers()), *as_written)


def offload_path_values(threshold: int) -> st.SearchStrategy[Any]:
    """Values at and around ``threshold``: ASCII and multi-byte strings, and any value padded past it."""
    sizes = sorted({s for s in (threshold - 1, threshold, threshold + 1, threshold * 4) if s >= 2} | {max(2, threshold)})
    strings = st.sampled_from(sizes).map(sized_string)
    multibyte = st.sampled_from(sizes).map(utf8_sized_string)
    padded = st.tuples(serde_values(max_leaves=6, infinities=False), st.sampled_from(sizes).map(sized_string))
    return st.one_of(strings, multibyte, padded, st.dictionaries(_keys, padded, min_size=1, max_size=2))
