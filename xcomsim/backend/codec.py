"""Turning values into stored form and back: Airflow serde, JSON bytes, compression, references.

The size that decides offload is the length of the serialised JSON (UTF-8), the
form Airflow would store inline. A reference is one bounded string naming the
store, the object and the content's SHA-256, so a row can never silently point
at different bytes. Two kinds of inline value are stored as their JSON text,
wrapped as ``{"__xcomsim_json__": text}``: one that looks like a reference (so it
cannot be mistaken for one), and one the inline path would not carry exactly:
inf and NaN (the Execution API's strict JSON refuses them, so plain BaseXCom
fails), integers beyond 2**53 (they come back rounded) and a bare integral
float such as 0.0 (it comes back as the int 0).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import math
import lzma
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from xcomsim.backend.errors import XComStoreError, XComValueError

REF_PREFIX = "xcomsim+"
ESCAPE_KEY = "__xcomsim_json__"
MAX_REFERENCE_LEN = 1024

_COMPRESS = {"gzip": gzip.compress, "zlib": zlib.compress, "bz2": bz2.compress, "lzma": lzma.compress, "": bytes}
_DECOMPRESS = {"gzip": gzip.decompress, "zlib": zlib.decompress, "bz2": bz2.decompress, "lzma": lzma.decompress, "": bytes}


@dataclass(frozen=True)
class Encoded:
    """A value in Airflow's serde form, and that form as JSON bytes (whose length is the size)."""

    serialized: Any
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def encode(value: Any, *, key: str, task_id: str) -> Encoded:
    from xcomsim.compat.names import serialize

    try:
        serialized = serialize(value)
        data = json.dumps(serialized, ensure_ascii=False, separators=(",", ":")).encode()
    except Exception as exc:
        raise XComValueError(
            f"task {task_id!r} pushed a value for XCom key {key!r} that cannot be serialised "
            f"({type(value).__module__}.{type(value).__qualname__}): {exc}"
        ) from exc
    return Encoded(serialized, data)


def decode_bytes(data: bytes) -> Any:
    from xcomsim.compat.names import deserialize

    return deserialize(json.loads(data))


def decode_inline(stored: Any) -> Any:
    from xcomsim.compat.names import deserialize

    if _is_escaped(stored):
        return deserialize(json.loads(stored[ESCAPE_KEY]))
    return deserialize(stored)


def inline(encoded: Encoded) -> Any:
    stored = encoded.serialized
    # A bare integral float (0.0, 1.0) comes back from the inline path as an int.
    bare_integral_float = isinstance(stored, float) and (stored.is_integer() or stored != stored)
    if is_reference(stored) or _is_escaped(stored) or bare_integral_float or not _portable(stored):
        return {ESCAPE_KEY: encoded.data.decode()}
    return stored


def _is_escaped(stored: Any) -> bool:
    return isinstance(stored, dict) and set(stored) == {ESCAPE_KEY} and isinstance(stored[ESCAPE_KEY], str)


_SAFE_INT = 2**53 - 1


def _portable(stored: Any) -> bool:
    """Whether JSON every hop of the inline path agrees on holds ``stored`` exactly.

    PostgreSQL's JSONB ``xcom.value`` adds three: it refuses ``\u0000`` in text,
    drops the sign of ``-0.0``, and turns an integral float written with an
    exponent (``1e+16``) into an integer.
    """
    if isinstance(stored, bool) or stored is None:
        return True
    if isinstance(stored, str):
        return "\x00" not in stored
    if isinstance(stored, int):
        return -_SAFE_INT <= stored <= _SAFE_INT
    if isinstance(stored, float):
        if stored != stored or stored in (float("inf"), float("-inf")):
            return False
        negative_zero = stored == 0 and math.copysign(1.0, stored) < 0
        return not negative_zero and not (stored.is_integer() and "e" in repr(stored))
    if isinstance(stored, dict):
        return all(isinstance(k, str) and "\x00" not in k and _portable(v) for k, v in stored.items())
    if isinstance(stored, (list, tuple)):
        return all(_portable(v) for v in stored)
    return False


def compress(data: bytes, codec: str) -> bytes:
    return _COMPRESS[codec](data)


def decompress(data: bytes, codec: str) -> bytes:
    try:
        return _DECOMPRESS[codec](data)
    except KeyError:
        raise XComStoreError(f"unknown compression {codec!r} (known: {sorted(c for c in _DECOMPRESS if c)} or none)") from None


def is_reference(stored: Any) -> bool:
    return isinstance(stored, str) and stored.startswith(REF_PREFIX)


@dataclass(frozen=True)
class Reference:
    """``xcomsim+<store uri>/<name>?sha256=..&size=..&codec=..``, at most 1 KiB."""

    store_path: str
    name: str
    sha256: str
    size: int
    codec: str

    def to_uri(self) -> str:
        query = urlencode({"sha256": self.sha256, "size": self.size, "codec": self.codec})
        uri = f"{REF_PREFIX}{self.store_path}/{self.name}?{query}"
        if len(uri) > MAX_REFERENCE_LEN:
            raise XComStoreError(
                f"reference {uri[:80]}... is {len(uri)} chars (limit {MAX_REFERENCE_LEN}); "
                "shorten the [xcomsim] xcom_objectstorage_path prefix"
            )
        return uri

    @classmethod
    def parse(cls, uri: str) -> Reference:
        body, _, query = uri[len(REF_PREFIX) :].partition("?")
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        try:
            store_path, kind, source, item = body.rsplit("/", 3)
            reference = cls(store_path, f"{kind}/{source}/{item}", params["sha256"], int(params["size"]), params["codec"])
        except (KeyError, ValueError) as exc:
            raise XComStoreError(f"malformed xcomsim reference {uri!r}: {exc}") from None
        if reference.codec not in _DECOMPRESS:
            raise XComStoreError(
                f"xcomsim reference {uri.partition('?')[0]} names compression {reference.codec!r}, "
                f"which this backend does not know (known: {sorted(c for c in _DECOMPRESS if c)} or none)"
            )
        return reference


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_folder(dag_id: str, task_id: str, key: str, kind: str = "values") -> str:
    """The folder of every object one (DAG, task, key) ever had, across runs and map indexes."""
    return f"{kind}/{_hash([dag_id, task_id, key])}/"


def object_name(dag_id: str, run_id: str, task_id: str, map_index: int, key: str, kind: str = "values",
                attempt: int | None = None) -> str:  # fmt: skip
    """The name of a coordinate's object: ``<kind>/<hash of dag, task, key>/<hash of run, map index>``.

    A pull that knows its source but not the run or map index of every row it
    gets (``get_all``, ``include_prior_dates``) can still refuse any object that
    is not that source's own. ``attempt`` (a try number) gives each try of a task
    instance an object of its own (``...<hash>.t<try>``), so two tries in flight
    at once never write the same bytes; a rerun of the same try overwrites its own.
    """
    base = source_folder(dag_id, task_id, key, kind) + _hash([run_id, map_index])
    return base if attempt is None else f"{base}.t{attempt}"


def owned_by(name: str, dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> bool:
    """Whether ``name`` is one of this coordinate's own value objects (any try's, or the fixed name)."""
    base = object_name(dag_id, run_id, task_id, map_index, key)
    return name == base or (name.startswith(base + ".t") and name[len(base) + 2:].isdigit())


def own_scheme(name: str) -> bool:
    """Whether ``name`` (relative to the store's prefix) is a name this backend writes: a value or a guard."""
    kind, _, rest = name.partition("/")
    folder, _, item = rest.partition("/")
    stem, dot, attempt = item.partition(".t")
    return (kind in ("values", "guards") and _is_hash(folder) and _is_hash(stem)
            and (not dot or (kind == "values" and attempt.isdigit())))  # fmt: skip


def _is_hash(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _hash(parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
