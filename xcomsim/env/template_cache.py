"""A migrated SQLite template kept across sessions, so a session starts without ``airflow db migrate``.

Migrating costs a session one to two seconds on 2 cores (plus importing alembic and
every migration script). What a migration writes depends only on the installed Airflow
distributions, SQLAlchemy, SQLite and the DAG-bundle configuration, so the result is
kept under a key of exactly those, in ``$XCOMSIM_CACHE_DIR`` (default
``$XDG_CACHE_HOME/xcomsim``, else ``~/.cache/xcomsim``). ``XCOMSIM_CACHE_DIR=off``
migrates every session, as before.

A cached file is only ever replaced whole (written beside it, then renamed), and it is
checked when read: a file that is not a migrated Airflow DB is migrated anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import sqlite3
import sys
from pathlib import Path

OFF = {"off", "0", "false", "no", ""}
# Settings a migration reads: the bundles it registers. Everything else it writes is schema.
_CONFIG_KEYS = ("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",)


def cache_dir() -> Path | None:
    """Where templates are kept, or None when caching is switched off."""
    value = os.environ.get("XCOMSIM_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xcomsim"


def airflow_distributions() -> list[str]:
    """Every installed apache-airflow* distribution as its metadata folder names it (name and version).

    Read from the folder names on ``sys.path`` (``apache_airflow_providers_amazon-9.1.0.dist-info``),
    as the import system finds them: opening the metadata of every installed distribution costs a
    session about 0.2 s.
    """
    found: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, _, suffix = name.rpartition(".")
            if suffix in ("dist-info", "egg-info") and stem.lower().replace("-", "_").startswith("apache_airflow"):
                found.add(stem.lower())
    return sorted(found)


def cache_key() -> str:
    """A digest of everything that decides what a fresh migration writes."""
    parts = [
        *airflow_distributions(),
        f"sqlalchemy=={importlib.metadata.version('sqlalchemy')}",
        f"sqlite=={sqlite3.sqlite_version}",
        f"python=={sys.version_info.major}.{sys.version_info.minor}",
        *(f"{k}={os.environ.get(k, '')}" for k in _CONFIG_KEYS),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def is_migrated(path: Path) -> bool:
    """True for a readable SQLite file that holds an Airflow schema at a recorded revision."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        revisions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        conn.execute("SELECT 1 FROM xcom LIMIT 1").fetchall()
        conn.execute("SELECT 1 FROM dag_bundle LIMIT 1").fetchall()
        return len(revisions) >= 1
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def cached_template() -> Path | None:
    """The cached template for this installation, if one is there and sound."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"airflow-template-{cache_key()}.sqlite"
    return path if path.is_file() and is_migrated(path) else None


def store(migrated: Path) -> Path | None:
    """Keep a copy of ``migrated`` for later sessions; the copy's path, or None if caching is off
    or the cache folder cannot be written (a session then simply migrates next time too)."""
    folder = cache_dir()
    if folder is None:
        return None
    final = folder / f"airflow-template-{cache_key()}.sqlite"
    partial = folder / f".{final.name}.{os.getpid()}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(f"file:{migrated}?mode=ro", uri=True)
        target = sqlite3.connect(partial)
        try:
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # read-only readers then need no -wal/-shm files
        finally:
            source.close()
            target.close()
        os.replace(partial, final)
    except (OSError, sqlite3.Error):
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return None
    return final
