"""What a backend does, found by probing it: whether it offloads, where, and what makes it offload.

Values are pushed while every store is watched (``stores``); a push offloads
when a new object appeared and its row names it (or, for text, no longer holds
the value). Each dimension a backend may offload by is probed on its own, the
others kept small: serialised size in bytes, found by bisection to the byte up to
a ceiling (16 MiB + 1 by default: ``--xcomsim-probe-max``; 0 means every value,
even a 1-byte ``0``); item count (a list, a dict) and nesting depth, bisected
likewise; and one small value of each type family (``xcomsim.strategies``: every
``DataFrame``, every ``Decimal``...). Multi-byte text at the byte threshold must
offload too: a backend counting characters keeps it inline.

The ``discovered`` line says what triggers offload, in this vocabulary::

    offloads every value to <location>
    offloads >= 4097 B to s3://bucket/prefix/; inline otherwise
    offloads every DataFrame, lists > 50 items to file:///tmp/x/; inline otherwise
    stores every value inline (probed: 16777217 B, 4096 items, 64 levels, 16 types)
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xcomsim.conformance.references import is_inline, local_files, refers_to
from xcomsim.conformance.stores import store_sizes, watch_directory
from xcomsim.conformance.verdict import harness_problem
from xcomsim.strategies._internal.families import (PROBE_MAX, airflow_types, counted, nested, numbered, type_samples,
                                                   uncarried_types)

MAX_PROBE = PROBE_MAX  # the default ceiling of the size probes
MAX_COUNT = 4096  # items; a container this long that stays inline is taken to stay inline
MAX_DEPTH = 64  # levels
COUNT_KINDS = ("list", "dict")
FILLER = "~"  # in no reference format the kit knows of
_runs = itertools.count()
_cache: dict[tuple[Any, ...], Discovery] = {}


@dataclass
class Discovery:
    offloads: bool = False
    threshold: int | None = None  # bytes; 0: every value; None: not by size
    location: str = ""  # the store and prefix of the offloaded objects: s3://bucket/prefix/
    reference: Any = None  # one row the backend wrote for an offloaded value, as stored
    reference_object: str = ""  # the object that row refers to
    multibyte_inline: str = ""  # a multi-byte value at/above the threshold that stayed inline
    counts: dict[str, int] = field(default_factory=dict)  # container kind -> fewest items that offload
    depth: int | None = None  # fewest nesting levels that offload
    types: list[str] = field(default_factory=list)  # type families whose small values offload
    probe_max: int = MAX_PROBE
    probed_types: int = 0
    probes: list[tuple[int, bool]] = field(default_factory=list)  # the size probes: (bytes, offloaded)
    error: str = ""  # the probe itself failed: the cause and the fix

    def triggers(self) -> list[str]:
        """What makes the backend offload, in the discovered line's words."""
        said = [f">= {self.threshold} B"] if self.threshold else []
        said += [f"every {name}" for name in self.types]
        said += [f"{kind}s > {n - 1} items" for kind, n in self.counts.items()]
        said += [f"values nested > {self.depth - 1} levels"] if self.depth else []
        return said

    def describe(self) -> str:
        if self.error:
            return f"discovery failed: {self.error}"
        if not self.offloads:
            return (f"discovered: stores every value inline (probed: {self.probe_max} B, {MAX_COUNT} items, "
                    f"{MAX_DEPTH} levels, {self.probed_types} types)")  # fmt: skip
        if self.threshold == 0:
            at = "every value"
        else:
            at = ", ".join(self.triggers())
        otherwise = "" if self.threshold == 0 else "; inline otherwise"
        return f"discovered: offloads {at} to {self.location}{otherwise}" + (
            f"; but {self.multibyte_inline}" if self.multibyte_inline else "")  # fmt: skip

    def triggered_values(self) -> list[Any]:
        """One value per trigger other than size, each below the byte threshold: what offloads it."""
        return [value for _, value in self._triggered(0)]

    def _triggered(self, n: int) -> list[tuple[str, Any]]:
        samples = type_samples()
        found = [(f"every {name}", samples[name](n + 3)) for name in self.types if name in samples]
        found += [(f"{kind}s", counted(count + n, kind)) for kind, count in self.counts.items()]
        found += [("depth", nested(self.depth + n))] if self.depth else []
        return found

    def offloaded_value(self, n: int = 0) -> Any:
        """The ``n``-th of distinct values that offload: past the byte threshold, else of the first other trigger."""
        if self.threshold is not None:
            return numbered(max(64, self.threshold * 4) + n, n)
        triggered = self._triggered(n)
        if not triggered:
            raise ValueError(f"nothing offloads ({self.describe()})")
        return triggered[0][1]


def diagnose(exc: BaseException, where: str = "") -> str:
    """Why a probe failed and what to do about it: the cause in the backend's words, then the fix.

    ``where``: the folder the kit's tests are collected in; a conftest.py there or above reaches them.
    """
    text = str(exc).splitlines()[0] if str(exc) else ""
    seen = f"{type(exc).__name__}: {text}"
    place = ("a conftest.py in the rootdir, which the kit's tests see" if where == "." else
             f"a conftest.py in {where}/ (or a folder above it, up to the rootdir), which the kit's tests see"
             if where else "a conftest.py the kit's tests see")  # fmt: skip
    error = getattr(exc, "response", None)
    error = error.get("Error", {}) if isinstance(error, dict) else {}
    bucket = error.get("BucketName") or next(iter(re.findall(r"[Bb]ucket[ '\"]+([a-z0-9][a-z0-9.-]{1,61})", text)), "")
    if error.get("Code") == "NoSuchBucket" or "bucket does not exist" in text.lower():
        named = f"'{bucket}' " if bucket else ""
        return (f"the backend's S3 bucket {named}does not exist in the test's S3 ({type(exc).__name__}); create it "
                f"in an autouse fixture of {place}: xcomsim_env.s3.create_bucket(Bucket={bucket or '...'!r})")  # fmt: skip
    conn = re.search(r"conn_id `?'?([\w.-]+)`?'? isn't defined", text)
    if conn:
        variable = f"AIRFLOW_CONN_{conn.group(1).upper()}"
        return (f"{seen}: the backend's Airflow connection {conn.group(1)!r} is not defined; set it in an autouse "
                f"fixture of {place}: monkeypatch.setenv({variable!r}, ...)")  # fmt: skip
    if type(exc).__module__.startswith("redis") or "redis" in text.lower():
        return (f"{seen}: the backend cannot reach its Redis; point its connection at the test's server "
                f"(xcomsim_env.simulation.redis: host, port) in an autouse fixture of {place}")  # fmt: skip
    return (f"{seen}: raised by the backend when the kit pushed a 1-byte value; what the backend needs (a bucket, "
            f"a connection, a config option) belongs in an autouse fixture of {place}")  # fmt: skip


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
    """Pushes probes and judges each. Listing every store takes ~0.1-0.2 s, so a search judges cheaply where it
    can: a row holding the value is inline, and a row much shorter than the value is taken as offloaded; the
    boundary a search finds is then confirmed with the stores listed (``confirm``), and searched again with
    every probe listed if the cheap judgement was wrong (a backend that compresses values inline)."""

    def __init__(self, env: Any, handle: Any) -> None:
        self.env, self.handle = env, handle
        self.keys = itertools.count()
        self.seen: dict[tuple[str, int], tuple[bool, Any, list[str]]] = {}
        self.objects = store_sizes(env)
        self.fresh = True  # self.objects is the stores as they are
        self.cheap = True

    def push(self, value: Any, cheap: bool = False) -> tuple[bool, Any, list[str]]:
        """Push ``value``: (offloaded, the row, the new objects)."""
        key = f"xcomsim_probe_{next(self.keys)}"
        if not cheap and not self.fresh:
            self.objects, self.fresh = store_sizes(self.env), True
        before = self.objects
        with self.handle.active() as ti:
            ti.xcom_push(key=key, value=value)
        row = _row(self.env, self.handle, key)
        if _holds(row, value):  # the row holds the value itself: no store need be listed
            return False, row, []
        if cheap and 2 * len(str(row)) < _length(value):
            self.fresh = False
            return True, row, []
        for path in local_files(row):  # a folder on disk the stores did not know of yet
            watch_directory(_base(path, self.handle))
        self.objects = after = store_sizes(self.env)
        self.fresh = True
        new = sorted((n for n in after if n not in before), key=lambda n: -after[n])
        refers = any(refers_to(row, n) for n in new)
        if isinstance(value, str):
            return bool(new) and (not is_inline(row, value) or refers), row, new
        return bool(new) and (refers or str(row).strip('"') != str(value) and len(str(row)) < 200), row, new

    def at(self, dimension: str, n: int, make: Callable[[int], Any]) -> bool:
        if (dimension, n) not in self.seen:
            self.seen[dimension, n] = self.push(make(n), cheap=self.cheap)
        return self.seen[dimension, n][0]

    def confirm(self, dimension: str, n: int, make: Callable[[int], Any]) -> bool:
        """Push the value at ``n`` again with the stores listed: whether it really offloads."""
        self.seen[dimension, n] = found = self.push(make(n))
        return found[0]

    def smallest(self, dimension: str, make: Callable[[int], Any], low: int, ceiling: int,
                 fits: Callable[[int], bool] = lambda n: True) -> int | None:  # fmt: skip
        """The least ``n`` in (low, ceiling] whose value offloads (doubling, then bisection), if any does.

        ``fits``: only values that pass are probed (a count probe must stay below the byte threshold,
        or it would offload by size).
        """
        start = low
        high = low + 1
        while not (fits(high) and self.at(dimension, high, make)):
            if high >= ceiling or not fits(min(high * 2, ceiling)):
                return None
            low, high = high, min(high * 2, ceiling)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if self.at(dimension, middle, make) else (middle, high)
        if self.cheap and not self.confirm(dimension, high, make):
            self.cheap = False  # judged wrong somewhere: every probe of this search listed from here on
            self.seen = {k: v for k, v in self.seen.items() if k[0] != dimension}
            found = self.smallest(dimension, make, start, ceiling, fits)
            self.cheap = True
            return found
        return high


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    from xcomsim.strategies import serialized_size

    try:
        return serialized_size(value)
    except Exception:  # noqa: BLE001 - never judged cheaply
        return 0


def _holds(row: Any, value: Any) -> bool:
    """Whether the row evidently holds the value inline: the text itself, or Airflow's serialised form of it
    (whole, or of 16 characters or more inside an envelope). Anything else is judged by listing the stores."""
    from xcomsim.compat.names import serialize

    if isinstance(value, str):
        return len(value) >= 16 and is_inline(row, value)
    try:
        form = serialize(value)
    except Exception:  # noqa: BLE001 - judged by the stores
        return False
    text = str(form)
    return row == form or (len(text) >= 16 and text in str(row))


def _zeros(n: int) -> list[int]:
    return [0] * n


def _zero_dict(n: int) -> dict[str, int]:
    return {f"{i:x}": 0 for i in range(n)}


def _row(env: Any, handle: Any, key: str) -> Any:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel

    table = XComModel.__table__
    query = select(table.c.value).where(table.c.run_id == handle.run_id, table.c.key == key,
                                        table.c.dag_id == handle.dag.dag_id)  # fmt: skip
    with env.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def _forget_rows(env: Any, handle: Any) -> None:
    """Drop the probes' rows (megabytes of inline text) so the tests' own reads of the table stay small."""
    from sqlalchemy import delete

    from airflow.models.xcom import XComModel

    table = XComModel.__table__
    with env.engine.begin() as conn:
        conn.execute(delete(table).where(table.c.dag_id == handle.dag.dag_id))


def discover(env: Any, backend_key: tuple[Any, ...] = (), where: str = "", probe_max: int = MAX_PROBE) -> Discovery:
    """Probe the installed backend (cached per ``backend_key``: the backend and its configuration).

    ``where``: the folder the kit's tests are collected in, named in the fix when the probe fails;
    ``probe_max``: the largest serialised size probed, in bytes.
    """
    if backend_key and (backend_key, probe_max) in _cache:
        return _cache[backend_key, probe_max]
    from xcomsim.scheduler.workload import workload_dag
    from xcomsim.task_context import thread_local_task_state

    from xcomsim.conformance.examples import one_task
    from xcomsim.strategies._internal.families import allow_family_classes

    found = Discovery(probe_max=probe_max)
    allow_family_classes()
    with thread_local_task_state():
        prober = _Prober(env, one_task(workload_dag(f"xcomsim_discovery_{next(_runs)}")))
        try:
            _probe(prober, found)
        except Exception as exc:  # noqa: BLE001 - reported, and the offload tests say "not run" with it
            if harness_problem(exc):
                raise  # the kit's own import, not the backend's fault: a harness problem, never "not run" on it
            found.error = diagnose(exc, where)
        finally:
            _forget_rows(env, prober.handle)
    found.probes = sorted((n, seen[0]) for (dimension, n), seen in prober.seen.items() if dimension == "bytes")
    if backend_key:
        _cache[backend_key, probe_max] = found
    return found


def _probe(prober: _Prober, found: Discovery) -> None:
    from xcomsim.strategies import serialized_size

    if prober.at("bytes", 1, lambda _: 0):  # a 1-byte value (``0``): everything offloads
        found.offloads, found.threshold = True, 0
    else:
        found.threshold = prober.smallest("bytes", sized, 1, found.probe_max)
        # Other triggers are probed with values of at most half the byte threshold: a backend may measure
        # a value otherwise (JSON with spaces, a pickle), and must not be said to offload by count for size.
        below = (found.threshold or 2 * found.probe_max) // 2

        def small(make: Callable[[int], Any]) -> Callable[[int], bool]:
            return lambda n: serialized_size(make(n)) < below

        samples, uncarried = airflow_types(), uncarried_types()
        found.probed_types = len(samples) + len(uncarried)
        for name, make in samples.items():
            if serialized_size(make(3)) < below and prober.confirm(f"type {name}", 3, make):
                found.types.append(name)
        # A type Airflow cannot store inline, that the backend stores as an object, offloads by its type
        # whatever its size; one the backend refuses as Airflow does is no trigger (the refusal is inherited).
        for name, make in uncarried.items():
            try:
                stored = prober.confirm(f"type {name}", 3, make)
            except Exception:  # noqa: BLE001 - the backend cannot carry it either
                continue
            if stored:
                found.types.append(name)
        for kind in COUNT_KINDS:
            make = _zeros if kind == "list" else _zero_dict
            count = prober.smallest(f"count {kind}", make, 0, MAX_COUNT, small(make))
            if count is not None and count > 1:  # one item offloading is a type (or everything), not a count
                found.counts[kind] = count
        depth = prober.smallest("depth", nested, 0, MAX_DEPTH, small(nested))
        found.depth = depth if depth is not None and depth > 1 else None
        found.offloads = bool(found.threshold or found.types or found.counts or found.depth)
    if not found.offloads:
        return
    if found.threshold is not None:
        prober.confirm("bytes", max(64, 4 * found.threshold), sized)  # a second offloaded object, for the location
    else:
        prober.confirm("second", 0, lambda _: found.offloaded_value(5))
    offloaded = [seen for _, seen in sorted(prober.seen.items(), key=lambda kv: -kv[0][1]) if seen[0] and seen[2]]
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
