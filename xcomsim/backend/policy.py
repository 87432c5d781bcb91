"""The per-DAG XCom policy: which keys each task may push and pull.

A policy is written next to the DAG, in its file, and attached to it::

    XComPolicy(
        pushes={"extract": ["raw_rows"], "transform": ["summary"]},
        pulls={"transform": {"extract": ["raw_rows"]}, "load": {"transform": ["summary"]}},
    ).attach(dag)

Attaching validates the policy against the DAG and registers it by ``dag_id`` in
this process. A worker imports the DAG file before it runs a task, so the
policy reaches the backend there exactly as it does in the harness.

Data dependencies written in code (a TaskFlow argument, ``.output``,
``.expand(...)``) are pulls the DAG author already declared; they are allowed
without a ``pulls`` entry, but the producer must still declare the key among
its ``pushes``. ``ti.xcom_pull`` calls need an explicit ``pulls`` entry. A
source in another DAG is written ``"other_dag/task_id"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from xcomsim.backend.errors import XComPolicyError

RETURN_KEY = "return_value"
# Keys Airflow itself pushes through the backend; refusing them would break operators.
AIRFLOW_INTERNAL_KEYS = frozenset({"skipmixin_key"})

_REGISTRY: dict[str, XComPolicy] = {}


LINK_PREFIX = "_link_"  # BaseOperatorLink's default xcom_key: _link_<Class>


def extra_link_keys(task: Any) -> frozenset[str]:
    """The XCom keys Airflow's ``finalize`` writes for the task's operator extra links (``_link_<Class>``)."""
    links = getattr(task, "operator_extra_links", None) or ()
    return frozenset(key for link in links if isinstance(key := getattr(link, "xcom_key", None), str))


@dataclasses.dataclass(frozen=True)
class XComPolicy:
    """``pushes``: task -> keys it may push. ``pulls``: caller -> {source task -> keys}.

    ``retry_replaces``: a later try of a task may replace the value an earlier try
    pushed (off by default: a retry's second push then raises XComOverwriteError).
    """

    pushes: Mapping[str, Iterable[str]]
    pulls: Mapping[str, Mapping[str, Iterable[str]]] = dataclasses.field(default_factory=dict)
    retry_replaces: bool = False
    dag_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pushes", _key_sets("pushes", self.pushes))
        if not isinstance(self.pulls, Mapping):
            raise XComPolicyError(f"pulls must map caller task -> {{source task: [keys]}}, got {self.pulls!r}")
        pulls = {}
        for caller, sources in self.pulls.items():
            _check_task_id("pulls", caller)
            pulls[caller] = _key_sets(f"pulls[{caller!r}]", sources)
        object.__setattr__(self, "pulls", pulls)
        if not isinstance(self.retry_replaces, bool):
            raise XComPolicyError(f"retry_replaces must be True or False, got {self.retry_replaces!r}")

    def attach(self, dag: Any) -> XComPolicy:
        """Check the policy against ``dag`` and register it for ``dag.dag_id``; return the bound policy."""
        bound = dataclasses.replace(self, dag_id=dag.dag_id, pulls=dict(self.pulls))
        task_ids = set(dag.task_ids)
        named = set(bound.pushes) | set(bound.pulls)
        named |= {s for sources in bound.pulls.values() for s in sources if "/" not in s}
        unknown = sorted(named - task_ids)
        if unknown:
            raise XComPolicyError(
                f"XCom policy of DAG {dag.dag_id!r} names task(s) {unknown} that the DAG does not have "
                f"(tasks: {sorted(task_ids)})"
            )
        shadowed = sorted((t, k) for t, keys in bound.pushes.items() for k in keys
                          if k in extra_link_keys(dag.task_dict[t]) and not k.startswith(LINK_PREFIX))  # fmt: skip
        if shadowed:
            details = ", ".join(f"{t!r} key {k!r}" for t, k in shadowed)
            raise XComPolicyError(
                f"XCom policy of DAG {dag.dag_id!r} declares pushes under keys Airflow writes an extra link to "
                f"({details}): Airflow's finalize would replace the value with the link; use another key"
            )
        implicit = _code_edges(dag)
        missing = sorted((p, k, c) for c, p, k in implicit if not bound.may_push(p, k))
        if missing:
            details = ", ".join(f"{p!r} pushes {k!r} (read by {c!r})" for p, k, c in missing)
            raise XComPolicyError(
                f"XCom policy of DAG {dag.dag_id!r} does not let {details}; add the key(s) to 'pushes'"
            )
        object.__setattr__(bound, "_implicit", frozenset(implicit))
        _REGISTRY[dag.dag_id] = bound
        return bound

    def may_push(self, task_id: str, key: str) -> bool:
        return key in AIRFLOW_INTERNAL_KEYS or key in self.pushes.get(task_id, ())

    def may_pull(self, caller: str, source_dag: str, source_task: str, key: str) -> bool:
        """Whether ``caller`` (a task of this DAG) may read ``key`` pushed by ``source_dag/source_task``."""
        source = source_task if source_dag == self.dag_id else f"{source_dag}/{source_task}"
        if source_dag == self.dag_id and source_task == caller and self.may_push(caller, key):
            return True  # reading back what you may write yourself leaks nothing
        if (caller, source, key) in getattr(self, "_implicit", ()):
            return True
        return key in self.pulls.get(caller, {}).get(source, ())


def policy_for(dag_id: str) -> XComPolicy | None:
    return _REGISTRY.get(dag_id)


def _check_task_id(where: str, task_id: object) -> None:
    if not isinstance(task_id, str) or not task_id:
        raise XComPolicyError(f"{where}: task ids must be non-empty strings, got {task_id!r}")


def _short(key: object) -> str:
    if isinstance(key, str) and len(key) > 40:
        return f"{key[:10]!r}... ({len(key)} chars)".replace("'...", "...'")
    return repr(key)


def _key_sets(where: str, mapping: object) -> dict[str, frozenset[str]]:
    if not isinstance(mapping, Mapping):
        raise XComPolicyError(f"{where} must be a mapping of task id -> list of keys, got {mapping!r}")
    result = {}
    for task_id, keys in mapping.items():
        _check_task_id(where, task_id)
        if isinstance(keys, str) or not isinstance(keys, Iterable):
            raise XComPolicyError(f"{where}[{task_id!r}] must be a list of keys, got {keys!r}")
        keys = list(keys)
        bad = [_short(k) for k in keys if not isinstance(k, str) or not k or len(k) > 512]
        if bad:
            raise XComPolicyError(
                f"{where}[{task_id!r}] has invalid key(s) [{', '.join(bad)}]: keys are 1-512 char strings"
            )
        result[task_id] = frozenset(keys)
    return result


def _code_edges(dag: Any) -> set[tuple[str, str, str]]:
    """(consumer, producer, key) for every XComArg a task's arguments reference."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    edges = set()
    for task in dag.tasks:
        for ref in XComArg.iter_xcom_references(_task_arguments(task)):
            producer, key = ref
            edges.add((task.task_id, producer.task_id, key))
    return edges


def _task_arguments(task: Any) -> list[Any]:
    """The operator (its template fields) plus, for a mapped task, what it expands over."""
    if not getattr(task, "is_mapped", False):
        return [task]
    return [task._get_specified_expand_input(), getattr(task, "partial_kwargs", None)]
