"""The pull path: pull-scope first, then a reference is followed only to the pulled source's own object."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

from xcomsim.backend import codec
from xcomsim.backend.config import load
from xcomsim.backend.errors import XComScopeError, XComStoreError
from xcomsim.backend.stores import ObjectStore, StoreLocation, open_store


@dataclasses.dataclass(frozen=True)
class Source:
    """What a pull asked for; ``exact`` is (run_id, map_index) when one row is meant."""

    dag_id: str
    task_id: str
    key: str
    exact: tuple[str, int] | None = None


PULLING: contextvars.ContextVar[Source | None] = contextvars.ContextVar("xcomsim_pulling", default=None)


@contextlib.contextmanager
def pulling(source: Source) -> Iterator[None]:
    token = PULLING.set(source)
    try:
        yield
    finally:
        PULLING.reset(token)


class PullPath:
    """``get_one``/``get_all`` (and async), ``deserialize_value``: every read checked, every object verified."""

    @classmethod
    def get_one(cls, *, key: str, dag_id: str, task_id: str, run_id: str, map_index: int | None = None,
                include_prior_dates: bool = False) -> Any | None:  # fmt: skip
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        exact = None if include_prior_dates or map_index is None else (run_id, map_index)
        with pulling(Source(dag_id, task_id, key, exact)):
            return super().get_one(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=map_index,
                                   include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    async def aget_one(cls, *, key: str, dag_id: str, task_id: str, run_id: str, map_index: int | None = None,
                       include_prior_dates: bool = False) -> Any | None:  # fmt: skip
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        exact = None if include_prior_dates or map_index is None else (run_id, map_index)
        with pulling(Source(dag_id, task_id, key, exact)):
            return await super().aget_one(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                          map_index=map_index, include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    def get_all(cls, *, key: str, dag_id: str, task_id: str, run_id: str, include_prior_dates: bool = False) -> Any:
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        with pulling(Source(dag_id, task_id, key)):
            return super().get_all(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                   include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    async def aget_all(cls, *, key: str, dag_id: str, task_id: str, run_id: str,
                       include_prior_dates: bool = False) -> Any:  # fmt: skip
        cls._check_coordinate(dag_id, run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        with pulling(Source(dag_id, task_id, key)):
            return await super().aget_all(key=key, dag_id=dag_id, task_id=task_id, run_id=run_id,
                                          include_prior_dates=include_prior_dates)  # fmt: skip

    @classmethod
    def deserialize_value(cls, result: Any) -> Any:  # type: ignore[override]
        """The value a row stores; a reference is followed only to the pulled source's own object."""
        source = cls._lazy_sequence_source(result)
        stored = result.value
        if not codec.is_reference(stored):
            return codec.decode_inline(stored)
        with pulling(source) if source is not None else contextlib.nullcontext():
            return codec.decode_bytes(fetch(stored, PULLING.get()))

    @classmethod
    def _lazy_sequence_source(cls, result: Any) -> Source | None:
        """Check a ``LazyXComSequence`` read (a mapped source's ``XComArg`` resolved and iterated).

        It reads values without ``get_one``/``get_all`` and hands each to
        ``deserialize_value`` alone, so the source is taken from the sequence on
        the caller's frame and checked here; if it cannot be found the read is refused.
        """
        from airflow.sdk.execution_time.lazy_sequence import LazyXComSequence, _XComWrapper

        if type(result) is not _XComWrapper:
            return None
        frame = sys._getframe(1)
        wanted = LazyXComSequence.__getitem__.__code__
        while frame is not None and frame.f_code is not wanted:
            frame = frame.f_back
        sequence = frame.f_locals.get("self") if frame is not None else None
        if not isinstance(sequence, LazyXComSequence):
            raise XComScopeError("XCom read through a lazy sequence whose source cannot be found: refused")
        xcom_arg = sequence._xcom_arg
        dag_id, task_id, key = xcom_arg.operator.dag_id, xcom_arg.operator.task_id, xcom_arg.key
        cls._check_coordinate(dag_id, sequence._ti.run_id, task_id, key)
        cls._check_pull_scope(dag_id, task_id, key)
        return Source(dag_id, task_id, key)


def value_store(ref: codec.Reference, paths: tuple[str, ...]) -> ObjectStore | None:
    """The configured store a reference names (by bucket and prefix, however it is spelled), if any."""
    place = StoreLocation.parse(ref.store_path)
    for path in paths:
        store = open_store(path)
        if place.same_place(store.location):
            return store
    return None


def fetch(uri: str, source: Source | None) -> bytes:
    """The bytes of the object a reference names, if it is the pulled source's own in the configured store.

    Without a source (the harness or a script reading rows back), any value
    object of the configured store and prefix is accepted.
    """
    ref = codec.Reference.parse(uri)
    where = uri.partition("?")[0]
    config = load()
    store = value_store(ref, config.value_paths)
    if store is None:
        raise XComStoreError(
            f"XCom row holds reference {where}, outside this backend's store {open_store(config.path).location}: "
            "refused"
        )
    if source is None:
        owned = ref.name.startswith("values/")
    elif source.exact is not None:
        owned = codec.owned_by(ref.name, source.dag_id, source.exact[0], source.task_id, source.exact[1], source.key)
    else:
        owned = ref.name.startswith(codec.source_folder(source.dag_id, source.task_id, source.key))
    if not owned:
        raise XComStoreError(
            f"XCom row of key {source.key if source else '?'!r} holds reference {where}, which is not that "
            "XCom's own object: refused (a row can be written by other code; only the object this backend "
            "wrote for the coordinate is its value)"
        )
    data = store.get(ref.name)
    if codec.digest(data) != ref.sha256:
        raise XComStoreError(f"object {where} no longer holds the bytes this XCom row was written with")
    return codec.decompress(data, ref.codec)
