"""``GET /api/v1/models`` and ``GET /api/v1/models/{id}``."""

from __future__ import annotations

import json

import pytest

from tests.openapi import assert_matches_openapi

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sample_catalog")]

MODEL_KEYS = {"id", "object", "kind", "description", "parameters", "pricing", "limits", "created_at"}


def test_models_need_an_api_key(client):
    response = client.get("/api/v1/models")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "missing_api_key"
    assert_matches_openapi(response, "get", "/api/v1/models")


def test_list_models(api_client):
    response = api_client.get("/api/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["has_more"] is False
    assert body["next_cursor"] is None
    assert [m["id"] for m in body["data"]] == ["test-image", "test-video", "test-audio", "test-chat"]
    image = body["data"][0]
    assert set(image) == MODEL_KEYS
    assert image["object"] == "model"
    assert image["kind"] == "image"
    assert image["parameters"]["type"] == "object"
    assert image["pricing"]["base"] == 2
    assert image["pricing"]["default_credits"] == 2
    assert image["limits"] == {"timeout_seconds": 30}
    assert image["created_at"] == "2026-01-02T03:04:05Z"
    assert_matches_openapi(response, "get", "/api/v1/models")


def test_filter_by_kind(api_client):
    response = api_client.get("/api/v1/models", {"kind": "chat"})
    assert [m["id"] for m in response.json()["data"]] == ["test-chat"]
    assert response.json()["data"][0]["pricing"]["output_per_1k_tokens"] == 3
    assert_matches_openapi(response, "get", "/api/v1/models")
    bad = api_client.get("/api/v1/models", {"kind": "hologram"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "kind"
    assert_matches_openapi(bad, "get", "/api/v1/models")


def test_get_one_model(api_client):
    response = api_client.get("/api/v1/models/test-video")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == MODEL_KEYS
    assert body["pricing"]["terms"] == [{"type": "per_unit", "parameter": "duration", "unit": 1, "credits": 3}]
    assert body["limits"] == {"timeout_seconds": 300}
    assert_matches_openapi(response, "get", "/api/v1/models/{model_id}")


def test_unknown_or_unavailable_model_is_404(api_client):
    for model_id in ("gpt-nothing", "test-missing", "test-upstream"):
        response = api_client.get(f"/api/v1/models/{model_id}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert (error["code"], error["param"], error["type"]) == ("model_not_found", "model", "not_found_error")
        assert_matches_openapi(response, "get", "/api/v1/models/{model_id}")


def test_provider_details_never_appear(api_client, monkeypatch):
    monkeypatch.setenv("RIVYA_TEST_UPSTREAM_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RIVYA_TEST_UPSTREAM_KEY", "sk-upstream-secret")
    response = api_client.get("/api/v1/models")
    assert "test-upstream" in [m["id"] for m in response.json()["data"]]
    text = response.content.decode()
    for secret in (
        "upstream-secret-model-name",
        "sk-upstream-secret",
        "127.0.0.1:9",
        "TestProvider",
        "tests.rivya_api",
        "RIVYA_TEST_UPSTREAM",
        "palette",
    ):
        assert secret not in text
    detail = api_client.get("/api/v1/models/test-upstream")
    assert set(json.loads(detail.content)) == MODEL_KEYS
