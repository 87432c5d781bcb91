"""XCom keys, task ids and map indexes, valid and invalid."""

from __future__ import annotations

from hypothesis import strategies as st

KEY_MAX = 512  # Airflow's xcom.key column
_id_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def xcom_keys() -> st.SearchStrategy[str]:
    """Keys Airflow accepts: 1-512 characters, any printable text."""
    return st.one_of(
        st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=40),
        st.integers(min_value=1, max_value=KEY_MAX).map(lambda n: "k" * n),
    )


def invalid_xcom_keys() -> st.SearchStrategy[str]:
    """Keys no backend should store: empty, or longer than the column holds."""
    return st.one_of(st.just(""), st.integers(min_value=KEY_MAX + 1, max_value=4 * KEY_MAX).map(lambda n: "k" * n))


def reserved_xcom_keys() -> st.SearchStrategy[str]:
    """Keys Airflow itself writes."""
    return st.sampled_from(["return_value", "skipmixin_key"])


def task_ids() -> st.SearchStrategy[str]:
    return st.text(_id_chars, min_size=1, max_size=30).filter(lambda s: s[0].isalnum())


def map_indexes(max_index: int = 8) -> st.SearchStrategy[int]:
    return st.integers(min_value=-1, max_value=max_index)
