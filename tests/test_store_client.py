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
