from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_python():
    """Run a snippet in a fresh interpreter (nothing of this session's Airflow state leaks in)."""

    def run(code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
        )

    return run


@pytest.fixture
def clean_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocess does not inherit this session's Airflow/AWS variables, nor xdist's
    (pytest-benchmark disables itself in a process that looks like an xdist worker)."""
    for name in list(os.environ):
        if name.startswith(("AIRFLOW", "AWS_", "PYTEST_XDIST_")):
            monkeypatch.delenv(name)
    # The checkout first: its code, not whatever copy of xcomsim the interpreter has installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    return pytester


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "long: a test of minutes (a whole kit run in a subprocess); scheduled first, see below")
    config.addinivalue_line(
        "markers", "soak: starts a real Celery deployment (minutes); runs only when selected with -m soak")
    config.addinivalue_line(
        "markers", "once: runs on one Python only in CI: its subject does not vary with the interpreter")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long tests first (after pytest-randomly's shuffle, keeping its order otherwise): under ``-n`` the
    workers start on them at once and share the short ones, instead of one worker ending the run alone.
    Tests marked ``soak`` start a real Airflow deployment: they run only when selected with ``-m soak``."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
    if "soak" not in (config.getoption("markexpr") or ""):
        skip = pytest.mark.skip(reason="starts a real Celery deployment: select it with -m soak")
        for item in items:
            if item.get_closest_marker("soak") is not None:
                item.add_marker(skip)


@pytest.fixture
def fixed_mutant_bucket(xcomsim_simulation):
    """The bucket 'xcomsim' for mutants that name it themselves (s3://xcomsim/mutant/...): on a shared S3
    endpoint each test's own bucket has another name, so this one is made (and left: other workers use it)."""
    from botocore.exceptions import ClientError

    from xcomsim.env.s3_store import S3Store

    if not isinstance(xcomsim_simulation.s3, S3Store):
        try:
            xcomsim_simulation.s3.client().create_bucket(Bucket="xcomsim")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    yield


@pytest.fixture
def outage_during_first_push(monkeypatch):
    """The first value upload fails and so does the guard's release after it (the S3 store down for a moment):
    a guard with no row is left, as a try SIGKILLed between the two leaves it. Returns what failed, in order."""
    from xcomsim.backend import XComStoreError
    from xcomsim.backend.stores import S3ObjectStore

    failed: list[str] = []
    real_put, real_delete = S3ObjectStore.put, S3ObjectStore.delete

    def put(self, name, data):
        if name.startswith("values/") and "put" not in failed:
            failed.append("put")
            raise XComStoreError("S3 store unreachable during put_object (outage)")
        return real_put(self, name, data)

    def delete(self, name):
        if name.startswith("guards/") and "delete" not in failed:
            failed.append("delete")
            raise XComStoreError("S3 store unreachable during delete_object (outage)")
        return real_delete(self, name)

    monkeypatch.setattr(S3ObjectStore, "put", put)
    monkeypatch.setattr(S3ObjectStore, "delete", delete)
    return failed
