"""Liveness and readiness probes."""

import pytest

from rivya_api import health

pytestmark = pytest.mark.django_db


def test_healthz_needs_no_key(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


def test_readyz_names_what_is_down(client, monkeypatch):
    def broken() -> None:
        raise ConnectionError("password=hunter2 refused")

    monkeypatch.setitem(health.CHECKS, "cache", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["unavailable"] == ["cache"]
    assert "hunter2" not in response.content.decode()
