"""What the checks compare and look for: exact values, and store objects a row refers to."""

from __future__ import annotations

import math
import re
from typing import Any

# scheme://[user@]host/path — an S3 (s3://bucket/key, s3://conn@bucket/key) or Redis reference.
_URI = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?:[^@/\s\"'?]+@)?(?P<host>[^/\s\"'?]+)/(?P<path>[^?\s\"']+)")


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (a tuple is not a list, -0.0 is not 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    module = type(a).__module__.split(".")[0]
    if module == "pandas" and hasattr(a, "equals"):  # element-wise ``==`` has no single truth value
        return bool(a.equals(b)) and list(getattr(a, "columns", [])) == list(getattr(b, "columns", []))
    if module == "numpy" and getattr(a, "ndim", 0):
        return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())
    return bool(a == b)


def object_key(name: str) -> str:
    """The key of ``s3://bucket/key``, ``redis[/N]:key`` or ``file:///path`` inside its store."""
    if name.startswith("s3://"):
        return name.split("/", 3)[3]
    if name.startswith("redis"):
        return name.partition(":")[2]
    return name.removeprefix("file://")


def references(row_value: Any, bucket: str) -> set[str]:
    """The store objects a stored row points at, named like ``store_sizes`` names them.

    Any URI in the row's text counts: one whose host is the test's bucket names
    an S3 object, one whose scheme mentions redis names a Redis key.
    """
    found = set()
    for match in _URI.finditer(str(row_value)):
        scheme, host, path = match["scheme"], match["host"], match["path"]
        if host == bucket and "redis" not in scheme:
            found.add(f"s3://{bucket}/{path}")
        elif "redis" in scheme:
            found.add(f"redis:{path}")
    return found


def refers_to(row_value: Any, name: str) -> bool:
    """Whether a row mentions the object (by its key) in any form."""
    return object_key(name) in str(row_value)
