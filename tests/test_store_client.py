"""The backend's S3 client, built as a fresh task process builds it: from the connection, without reading the stack."""

from __future__ import annotations

import inspect
import json

import pytest

from xcomsim.backend import stores


def test_the_s3_client_comes_from_the_connection_without_inspecting_the_stack(monkeypatch: pytest.MonkeyPatch):
    """``S3Hook.get_conn`` calls ``inspect.stack()`` up to three times to name its caller in the user agent;
    in a task process that read the source of every frame and made the first push take seconds."""
    conn = {"conn_type": "aws", "login": "soak-key", "password": "soak-secret",
            "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-3"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_XCOMSIM_CLIENT_TEST", json.dumps(conn))
    calls = []
    real_stack = inspect.stack
    monkeypatch.setattr(inspect, "stack", lambda *a, **k: calls.append(1) or real_stack(*a, **k))
    client = stores._make_s3_client("xcomsim_client_test")
    assert calls == []
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "eu-west-3"
    credentials = client._request_signer._credentials.get_frozen_credentials()
    assert (credentials.access_key, credentials.secret_key) == ("soak-key", "soak-secret")


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python 3.12+: fork in a threaded process
def test_a_process_forked_after_warm_builds_its_client_without_parsing_botocore_data(monkeypatch: pytest.MonkeyPatch):
    """A Celery worker warms before forking its task processes: their first client reads no model file again."""
    import os

    from botocore.loaders import JSONFileLoader

    conn = {"conn_type": "aws", "login": "k", "password": "s", "extra": {"endpoint_url": "http://127.0.0.1:9"}}
    monkeypatch.setenv("AIRFLOW_CONN_XCOMSIM_WARM_TEST", json.dumps(conn))
    stores.warm()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the task process
        files: list[str] = []
        real = JSONFileLoader.load_file
        JSONFileLoader.load_file = lambda self, path: files.append(path) or real(self, path)  # type: ignore[method-assign]
        try:
            client = stores._make_s3_client("xcomsim_warm_test")
            os.write(write, json.dumps([client.meta.endpoint_url, files]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as out:
        endpoint, files = json.loads(out.read() or '[null, ["child failed"]]')
    os.waitpid(pid, 0)
    assert endpoint == "http://127.0.0.1:9"
    assert files == []  # cold, it parses the S3 model, its rule set, endpoints.json and partitions.json


def test_the_celery_configuration_module_is_airflows_own_and_warms():
    pytest.importorskip("airflow.providers.celery", reason="the celery provider comes with the soak extra")
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from xcomsim.backend import warm

    assert warm.CELERY_CONFIG is DEFAULT_CELERY_CONFIG  # create_celery_app then adds nothing of its own
    assert stores._LOADER is not None
