"""Every way task code can push or pull an XCom, as data: what adversarial scope tests draw.

A backend that checks scope on ``ti.xcom_pull(task_ids="a", key="k")`` may
still leak through a list of task ids, a generator, ``task_ids=None``, another
DAG id, a run id or key with ``/ ? # % ..`` in it, ``XCom.get_one`` called
directly, a pull from an ``on_failure_callback`` (no task context), a Jinja
template, ``XComArg.resolve``, a ``LazyXComSequence`` (what a mapped source's
pull returns, read item by item), an ``XCom.set`` that names another task, or a
bookkeeping key (``skipmixin_key``) used as a data channel. Each form is a
small frozen value so a failing one shrinks and reads as one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

PULL_VIAS = ("xcom_pull", "get_one", "get_all", "callback", "template", "xcomarg", "lazy_sequence")
TASK_ID_SHAPES = ("str", "list", "list-with-own", "generator", "none")
MAP_INDEXES = ("omit", None, -1, (-1,), 0)
PUSH_VIAS = ("xcom_push", "set", "set-impersonating")
# Run ids and key suffixes that mean something to a URL, a path or a LIKE pattern; and non-Latin text.
ODD_TEXT = ("/../", "?x=1", "#frag", "%2F", "%", "..", "_", "/", "é", "键", "ключ", " ")
BOOKKEEPING_KEY = "skipmixin_key"


@dataclass(frozen=True)
class PullForm:
    via: str = "xcom_pull"
    task_ids: str = "str"
    map_indexes: object = "omit"
    include_prior_dates: bool = False
    other_dag: bool = False
    run_id_suffix: str | None = None  # None: the caller's own run

    def __str__(self) -> str:
        parts = [self.via]
        if self.via == "xcom_pull":
            parts.append(f"task_ids={self.task_ids}")
            if self.map_indexes != "omit":
                parts.append(f"map_indexes={self.map_indexes!r}")
        if self.include_prior_dates:
            parts.append("include_prior_dates")
        if self.other_dag:
            parts.append("another dag_id")
        if self.run_id_suffix is not None:
            parts.append(f"run_id+{self.run_id_suffix!r}")
        return " ".join(parts)


@dataclass(frozen=True)
class PushForm:
    via: str = "xcom_push"

    def __str__(self) -> str:
        return self.via


def pull_forms() -> st.SearchStrategy[PullForm]:
    """Pull forms, the plain one first (Hypothesis shrinks towards it)."""
    return st.builds(
        PullForm,
        via=st.sampled_from(PULL_VIAS),
        task_ids=st.sampled_from(TASK_ID_SHAPES),
        map_indexes=st.sampled_from(MAP_INDEXES),
        include_prior_dates=st.booleans(),
        other_dag=st.booleans(),
        run_id_suffix=st.none() | st.sampled_from(ODD_TEXT),
    )


def push_forms() -> st.SearchStrategy[PushForm]:
    return st.builds(PushForm, via=st.sampled_from(PUSH_VIAS))


def adversarial_keys(keys: tuple[str, ...]) -> st.SearchStrategy[str]:
    """The scope's own keys, the same keys bent by URL/path/pattern characters, and the bookkeeping key."""
    base = st.sampled_from(keys)
    bent = st.tuples(base, st.sampled_from(ODD_TEXT), st.booleans()).map(
        lambda t: f"{t[0]}{t[1]}" if t[2] else f"{t[1]}{t[0]}"
    )
    return st.one_of(base, bent, st.just(BOOKKEEPING_KEY))
