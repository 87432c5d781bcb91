"""The migrated template kept across sessions: used when sound, migrated anew when not, off on request."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xcomsim.env import template_cache

# A library session (no pytest) that prints how long its migration took: 0.0 means the cache served it.
_SESSION = textwrap.dedent(
    """
    from xcomsim.env.environment import Simulation
    with Simulation.start() as sim:
        print("migrate_seconds", sim.template.migrate_seconds)
        with sim.environment() as env:
            from sqlalchemy import text
            with env.engine.connect() as conn:
                print("xcom_rows", conn.execute(text("SELECT count(*) FROM xcom")).scalar())
    """
)


def _session(cache: str, tmp_path: Path) -> tuple[float, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XCOMSIM_CACHE_DIR": cache,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _SESSION], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    values = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    return float(values["migrate_seconds"]), values["xcom_rows"]


def test_a_second_session_takes_the_template_from_the_cache(tmp_path: Path):
    cache = tmp_path / "cache"
    first, _ = _session(str(cache), tmp_path)
    (kept,) = cache.glob("airflow-template-*.sqlite")
    assert first > 0 and template_cache.is_migrated(kept)
    second, rows = _session(str(cache), tmp_path)
    assert second == 0.0 and rows == "0"
    assert not list(cache.glob("*.partial")) and not list(cache.glob("*-wal"))


def test_a_damaged_cached_template_is_migrated_anew(tmp_path: Path):
    cache = tmp_path / "cache"
    _session(str(cache), tmp_path)
    (kept,) = cache.glob("airflow-template-*.sqlite")
    with sqlite3.connect(kept) as conn:
        conn.execute("DROP TABLE xcom")
    assert not template_cache.is_migrated(kept)
    again, rows = _session(str(cache), tmp_path)
    assert again > 0 and rows == "0"
    assert template_cache.is_migrated(kept)


def test_off_migrates_every_session_and_writes_nothing(tmp_path: Path):
    assert _session("off", tmp_path)[0] > 0
    assert not (tmp_path / ".cache").exists()


def test_the_key_changes_with_what_decides_the_schema(monkeypatch: pytest.MonkeyPatch):
    key = template_cache.cache_key()
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", '[{"name": "other"}]')
    assert template_cache.cache_key() != key


def test_an_unwritable_cache_folder_only_costs_the_next_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XCOMSIM_CACHE_DIR", str(blocker / "cache"))
    source = tmp_path / "db.sqlite"
    sqlite3.connect(source).close()
    assert template_cache.store(source) is None
    assert template_cache.cached_template() is None


def test_the_key_names_exactly_the_installed_airflow_distributions():
    """The folder-name scan finds what importlib.metadata finds, versions included."""
    import importlib.metadata
    import re

    from xcomsim.env.template_cache import airflow_distributions

    expected = {
        f"{re.sub(r'[-_.]+', '_', d.metadata['Name']).lower()}-{d.version}"
        for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("apache-airflow")
    }
    assert expected and set(airflow_distributions()) == expected
