"""Values Airflow's serde round-trips, and values sized at a backend's offload threshold."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

# Airflow's serde handles no bytes; surrogates cannot be encoded as UTF-8.
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_keys = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**128), max_value=2**128),
        st.floats(allow_nan=False),  # NaN != NaN: compared separately by round-trip checks
        st.sampled_from([float("inf"), float("-inf"), -0.0, 2**53 + 1.0]),
        _text,
        st.datetimes(
            min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
        ),
        st.timedeltas(min_value=timedelta(days=-10_000), max_value=timedelta(days=10_000)),
    )


def serde_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Nested dicts (str keys), lists, tuples and sets of every scalar kind serde keeps exact."""
    return st.recursive(
        _scalars(),
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
    from airflow.sdk.serde import serialize

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
