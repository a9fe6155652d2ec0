"""Pytest fixtures of the [files] area: a fake hub on 127.0.0.1 and a guard against any other network."""

from __future__ import annotations

import socket

import pytest

from builders.files import FakeHub


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path_factory, monkeypatch):
    """Every test sees an empty Hugging Face cache: tokenizers the machine has cached must not change a result."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "empty-hub-cache"))


@pytest.fixture
def loopback_only(monkeypatch):
    """Fails the test if anything tries to connect anywhere but 127.0.0.1 (and keeps proxies out of the way)."""
    real_create_connection = socket.create_connection

    def guarded(address, *args, **kwargs):
        host = address[0]
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"test tried to reach {host}; only loopback is allowed")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


@pytest.fixture
def fake_hub(loopback_only):
    hub = FakeHub().start()
    yield hub
    hub.stop()
