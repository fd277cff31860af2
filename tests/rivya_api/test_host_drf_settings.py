"""The API's DRF configuration is its own: a host's global REST_FRAMEWORK and SPECTACULAR_SETTINGS
change neither the API's answers and document nor, the other way round, the host's own views."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.rivya_api.urls_host_drf")]

SNAPSHOT = Path(__file__).with_name("openapi.snapshot.json")

HOST_REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.BrowsableAPIRenderer",
        "rest_framework.renderers.JSONRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.FormParser"],
    "DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema",
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.QueryParameterVersioning",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 2,
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": "1000/day"},
}
HOST_SPECTACULAR = {"TITLE": "The host's own API", "COMPONENT_SPLIT_REQUEST": False, "POSTPROCESSING_HOOKS": []}


@pytest.fixture(autouse=True)
def host_settings(settings):
    settings.REST_FRAMEWORK = HOST_REST_FRAMEWORK
    settings.SPECTACULAR_SETTINGS = HOST_SPECTACULAR


def test_the_api_keeps_its_error_shape_and_auth(client, api_client):
    response = client.get("/api/v1/credits", HTTP_ACCEPT="text/html")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "missing_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")
    ok = api_client.get("/api/v1/models", HTTP_ACCEPT="text/html")
    assert ok.status_code == 200
    assert ok["Content-Type"] == "application/json"
    assert ok.json()["object"] == "list"
    created = api_client.post("/api/v1/webhooks", {"url": "x", "event_types": ["generation.succeeded"]}, format="json")
    assert created.status_code == 400, "JSON is parsed although the host's parsers take forms only"
    assert created.json()["error"]["param"] == "url"


def test_the_api_document_is_the_snapshot(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200, response.content[:500]
    document = response.json()
    assert document == json.loads(SNAPSHOT.read_text()), "the document changed under the host's settings"
    assert "/host/ping" not in document["paths"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"<title>Rivya API</title>" in docs.content


def test_the_hosts_own_views_keep_the_hosts_settings(client):
    response = client.get("/host/ping", HTTP_ACCEPT="application/json")
    assert response.status_code == 403, "the host's IsAuthenticated still applies to its own view"
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    browsable = client.get("/host/ping", HTTP_ACCEPT="text/html")
    assert browsable["Content-Type"].startswith("text/html")
