"""References judged by behaviour and by what the backend was seen to write, never by a URI pattern.

A row refers to an object when the object's key, or its file name (a uuid, a
hash: anything of 8 characters or more), appears in the row, or the key without
its first folder or its extension stands in it as a whole: that covers
``s3://bucket/key``, ``xcom_s3://<dag>/<run>/<task>/<key>``, ``s3_xcom_<uuid>``
and bare keys alike. A row dangles when the backend cannot read it back.
"""

from __future__ import annotations

import os
import re
from typing import Any

from xcomsim.checks.registry import MAX_REFERENCE
from xcomsim.checks.values import object_key

_MIN_TOKEN = 8


def _tokens(name: str) -> list[str]:
    """The forms a row may name the object by, most specific first: its key, file name, stem."""
    key = object_key(name)
    tail = key.replace(":", "/").rstrip("/").rsplit("/", 1)[-1]
    stem = tail.split(".", 1)[0]
    return list(dict.fromkeys(t for t in (key, tail, stem) if t and (len(t) >= _MIN_TOKEN or t == key)))


def _inner_paths(name: str) -> list[str]:
    """The key without its first folder, its extension, or both (8 characters and two folders or more).

    A backend may name an object under a scheme of its own: ``xcom/<dag>/<run>/<task>/<key>.json``
    held as ``xcom_s3://<dag>/<run>/<task>/<key>``, where neither the whole key nor its file name appears.
    """
    key = object_key(name)
    forms = [key] + ([key.rsplit(".", 1)[0]] if "." in key.rsplit("/", 1)[-1] else [])
    found = [cut for form in forms for cut in (form, form.partition("/")[2]) if cut.count("/") >= 1]
    return [t for t in dict.fromkeys(found) if len(t) >= _MIN_TOKEN and t != key]


def token_in(row_value: Any, name: str) -> str | None:
    """The part of the object's name the row holds (its key, file name, stem, or an inner path), if any.

    An inner path counts only where it stands whole (no letter, digit, ``_`` or ``-`` on either side):
    ``worker/-1/big`` must not be found inside another XCom's ``other_worker/-1/big_other``.
    """
    text = str(row_value)
    found = next((token for token in _tokens(name) if token in text), None)
    if found is None:
        found = next((t for t in _inner_paths(name) if re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", text)), None)
    return found


def refers_to(row_value: Any, name: str) -> bool:
    """Whether a row mentions the object, by its key, its file name or an inner path, in any form."""
    return token_in(row_value, name) is not None


def is_inline(row_value: Any, pushed: str) -> bool:
    """Whether a row holds ``pushed`` (a str) itself rather than a reference to it."""
    text = row_value if isinstance(row_value, str) else str(row_value)
    return pushed in text


def offload_violations(rows: list[dict[str, Any]], objects: dict[str, int], before: frozenset[str],
                       threshold: int, pushed: dict[str, tuple[str, int]]) -> list[str]:  # fmt: skip
    """At/above ``threshold`` a row is a short reference to a new object; below, the value is inline.

    ``pushed``: key -> (the str pushed, its serialised size in UTF-8 bytes).
    """
    by_key = {row["key"]: row["value"] for row in rows}
    problems = []
    for key, (value, size) in pushed.items():
        if key not in by_key:
            problems.append(f"{key!r} ({size} B) has no row")
            continue
        row = by_key[key]
        row_bytes = len(str(row).encode())
        new = [n for n in objects if n not in before and refers_to(row, n)]
        inline = is_inline(row, value) and not new
        described = f"{key!r}: {size} B serialised" + (" (multi-byte text)" if not value.isascii() else "")
        if size >= threshold and (not new or row_bytes > MAX_REFERENCE):
            problems.append(f"{described} (>= {threshold}) but the row is {row_bytes} B, "
                            f"{'holds the value inline' if inline else f'refers to {len(new)} new object(s)'}; "
                            f"it must be a reference of <= {MAX_REFERENCE} B")  # fmt: skip
        if size < threshold and value.isascii() and not inline:
            problems.append(f"{described} (< {threshold}) but not stored inline (row of {row_bytes} B)")
    return problems


def orphans(rows: list[dict[str, Any]], objects: dict[str, int], before: frozenset[str], floor: int) -> list[str]:
    """New value-sized objects (``floor`` bytes or more) that no row refers to."""
    texts = [str(row["value"]) for row in rows]
    return sorted(n for n, size in objects.items()
                  if n not in before and size >= floor and not any(refers_to(t, n) for t in texts))  # fmt: skip


def dangling(records: list[Any], keys: set[str] | None = None) -> list[str]:
    """Rows (``runner.read_xcoms`` records) the backend cannot read back: their value is gone."""
    return [f"row {r.task_id}/{r.key} (stored {str(r.stored)[:80]!r}) cannot be pulled: {r.error}"
            for r in records if r.error and (keys is None or r.key in keys)]  # fmt: skip


_LOCAL = re.compile(r"(?:file://)?(/[^\s\"'<>|]+)")


def local_files(row_value: Any) -> list[str]:
    """Existing local files a row names (``file:///path`` or ``/path``): where a backend keeps objects on disk."""
    return [p for p in _LOCAL.findall(str(row_value)) if os.path.isfile(p)]
