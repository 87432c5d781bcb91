"""Names for what the harness creates on a shared server, unique per session, worker and test.

Several pytest sessions, and the workers of one ``pytest -n N`` run, may share a
PostgreSQL, Redis or S3 server. Everything xcomsim creates there carries this
process's tag, so no two of them ever touch the same database, bucket or DB index.
"""

from __future__ import annotations

import itertools
import os
import secrets
import urllib.parse

_TOKEN = secrets.token_hex(3)
_counter = itertools.count(1)


def worker_id() -> str:
    """``gw0``, ``gw1``, ... under pytest-xdist; ``main`` otherwise."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def worker_number() -> int:
    """0 for the first xdist worker (and for a run without xdist), 1 for the next, ..."""
    worker = worker_id()
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


def process_tag() -> str:
    """Unique to this process: ``<random>`` plus the xdist worker, e.g. ``3fa9c1gw1``."""
    worker = worker_id()
    return _TOKEN + ("" if worker == "main" else worker)


def next_number() -> int:
    """A new number for each per-test resource this process creates."""
    return next(_counter)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = urllib.parse.unquote(parts.username or "")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
