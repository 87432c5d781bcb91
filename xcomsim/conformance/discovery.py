"""What a backend does, found by probing it: whether it offloads, where, and from how many bytes.

Values of growing serialised size are pushed while every store is watched
(``stores``); a push offloads when its row no longer holds the value and a new
object appeared. The threshold is found by bisection to the byte (0: every
value, even a 1-byte ``0``), then checked with multi-byte text, which a
backend measuring characters instead of UTF-8 bytes keeps inline.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from xcomsim.conformance.references import is_inline, local_files, refers_to
from xcomsim.conformance.stores import store_sizes, watch_directory

MAX_PROBE = 1 << 20  # beyond 1 MiB a value is taken to stay inline
FILLER = "~"  # in no reference format the kit knows of
_runs = itertools.count()
_cache: dict[tuple[Any, ...], Discovery] = {}


@dataclass
class Discovery:
    offloads: bool = False
    threshold: int | None = None  # bytes; 0: every value
    location: str = ""  # the store and prefix of the offloaded objects: s3://bucket/prefix/
    reference: Any = None  # one row the backend wrote for an offloaded value, as stored
    reference_object: str = ""  # the object that row refers to
    multibyte_inline: str = ""  # a multi-byte value at/above the threshold that stayed inline
    probes: list[tuple[int, bool]] = field(default_factory=list)
    error: str = ""  # the probe itself failed (the backend refused a plain str)

    def describe(self) -> str:
        if self.error:
            return f"discovery failed: {self.error}"
        if not self.offloads:
            return f"discovered: stores every value inline (probed up to {MAX_PROBE} B)"
        at = "every value" if self.threshold == 0 else f">= {self.threshold} B"
        return f"discovered: offloads {at} to {self.location}" + (
            f"; but {self.multibyte_inline}" if self.multibyte_inline else "")  # fmt: skip


def sized(size: int, char: str = FILLER) -> str:
    """A str whose serialised JSON (UTF-8) is ``size`` bytes, or ``size + 1`` for a 2-byte ``char``."""
    width = len(char.encode())
    return char * max(0, -(-(size - 2) // width))


def _prefix(names: list[str]) -> str:
    common = os.path.commonprefix(names)
    cut = max(common.rfind("/"), common.rfind(":"))
    return common[: cut + 1] if cut >= 0 else common


def _base(path: str, handle: Any) -> str:
    """The folder above the first part of ``path`` named after the probe (its DAG, run, task or key)."""
    cuts = [path.find(mark) for mark in (handle.dag.dag_id, handle.run_id, handle.task_id, "xcomsim_probe")]
    cut = min([c for c in cuts if c >= 0], default=len(path))
    return os.path.dirname(path[:cut].rstrip("/") + "/x") if cut < len(path) else os.path.dirname(path)


def _location(names: list[str], handle: Any) -> str:
    """The objects' common prefix, up to the first part named after the probe (its DAG, run, task or key)."""
    common = os.path.commonprefix(names)
    cuts = [common.find(mark) for mark in (handle.dag.dag_id, handle.run_id, handle.task_id, "xcomsim_probe")]
    cut = min([c for c in cuts if c >= 0], default=len(common))
    return _prefix([common[:cut]]) if cut < len(common) else _prefix(names) if len(names) > 1 else names[0]


class _Prober:
    def __init__(self, env: Any, handle: Any) -> None:
        self.env, self.handle = env, handle
        self.keys = itertools.count()
        self.seen: dict[int, tuple[bool, Any, list[str]]] = {}
        self.objects = store_sizes(env)

    def push(self, value: Any) -> tuple[bool, Any, list[str]]:
        """Push ``value``: (offloaded, the row, the new objects)."""
        key = f"xcomsim_probe_{next(self.keys)}"
        before = self.objects
        with self.handle.active() as ti:
            ti.xcom_push(key=key, value=value)
        row = next(r["value"] for r in self.env.xcom_rows() if r["key"] == key and r["run_id"] == self.handle.run_id)
        for path in local_files(row):  # a folder on disk the stores did not know of yet
            watch_directory(_base(path, self.handle))
        self.objects = after = store_sizes(self.env)
        new = sorted((n for n in after if n not in before), key=lambda n: -after[n])
        inline = is_inline(row, value) if isinstance(value, str) else str(row).strip('"') == str(value)
        return bool(new) and (not inline or any(refers_to(row, n) for n in new)), row, new

    def at(self, size: int) -> bool:
        if size not in self.seen:
            self.seen[size] = self.push(0 if size == 1 else sized(size))
        return self.seen[size][0]


def discover(env: Any, backend_key: tuple[Any, ...] = ()) -> Discovery:
    """Probe the installed backend (cached per ``backend_key``: the backend and its configuration)."""
    if backend_key and backend_key in _cache:
        return _cache[backend_key]
    from xcomsim.scheduler.workload import workload_dag
    from xcomsim.task_context import thread_local_task_state

    from xcomsim.conformance.examples import one_task

    found = Discovery()
    with thread_local_task_state():
        prober = _Prober(env, one_task(workload_dag(f"xcomsim_discovery_{next(_runs)}")))
        try:
            _probe(prober, found)
        except Exception as exc:  # noqa: BLE001 - reported, and the offload tests skip with it
            found.error = f"{type(exc).__name__}: {exc}"
    found.probes = sorted((s, o) for s, (o, _, _) in prober.seen.items())
    if backend_key:
        _cache[backend_key] = found
    return found


def _probe(prober: _Prober, found: Discovery) -> None:
    if prober.at(1):  # a 1-byte value (``0``): everything offloads
        found.offloads, found.threshold = True, 0
    else:
        low, high = 1, 2  # low stays inline; double high until it offloads, then bisect
        while not prober.at(high):
            if high >= MAX_PROBE:
                return
            low, high = high, min(high * 2, MAX_PROBE)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if prober.at(middle) else (middle, high)
        found.offloads, found.threshold = True, high
    prober.at(max(64, 4 * (found.threshold or 0)))  # a second offloaded object, for the location
    offloaded = [seen for size, seen in sorted(prober.seen.items(), reverse=True) if seen[0]]
    _, row, new = offloaded[0]
    found.reference, found.reference_object = row, new[0]
    found.location = _location([seen[2][0] for seen in offloaded[:2]], prober.handle)
    if found.threshold and found.threshold > 2:
        value = sized(found.threshold, "é")
        size = len(value.encode()) + 2
        offloads, _, _ = prober.push(value)
        if not offloads:
            found.multibyte_inline = (f"'é' x {len(value)} ({size} B serialised, >= {found.threshold}) stays inline: "
                                      "the size is counted in characters, not UTF-8 bytes")  # fmt: skip
