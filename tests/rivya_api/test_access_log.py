"""The ``rivya.access`` line: one per request, JSON in production, route, account and key prefix, never a secret."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from rivya_api.common.logging import RequestIdFilter
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def access_lines():
    """Parsed JSON access lines, formatted exactly as production formats them."""
    formatter_config = dict(settings.LOGGING["formatters"]["json"])
    formatter = import_string(formatter_config.pop("()"))(**formatter_config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("rivya.access")
    logger.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


def test_authenticated_api_call_logs_account_key_and_route_but_no_secret(api_client, account, access_lines):
    response = api_client.get("/api/v1/models", HTTP_X_REQUEST_ID="req_accesslogtest")
    assert response.status_code == 200
    (line,) = access_lines()
    assert line["logger"] == "rivya.access"
    assert line["request_id"] == "req_accesslogtest" == response["X-Request-Id"]
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "GET", "/api/v1/models", "/api/v1/models", 200,
    )  # fmt: skip
    assert isinstance(line["duration_ms"], float)
    assert line["account"] == str(getattr(account, "public_id", None) or account.pk)
    assert line["api_key"] == api_client.api_key.public_id
    assert line["api_key_prefix"] == api_client.api_key.prefix
    assert api_client.secret.startswith(line["api_key_prefix"])
    assert len(line["api_key_prefix"]) <= 12
    raw = json.dumps(line)
    assert api_client.secret not in raw
    assert api_client.secret[len(line["api_key_prefix"]) :][:8] not in raw


def test_detail_routes_log_the_pattern_and_the_path(api_client, access_lines):
    api_client.get("/api/v1/models/no-such-model")
    (line,) = access_lines()
    assert line["route"] == "/api/v1/models/<str:model_id>"
    assert line["path"] == "/api/v1/models/no-such-model"
    assert line["status"] == 404


def test_anonymous_and_refused_requests_log_no_account(client, access_lines):
    client.get("/healthz")
    client.get("/api/v1/models", HTTP_AUTHORIZATION="Bearer rvya_sk_" + "x" * 43)
    health, refused = access_lines()
    assert health["route"] == "/healthz"
    assert "account" not in health
    assert refused["status"] == 401
    assert "account" not in refused
    assert "api_key_prefix" not in refused


def test_session_user_is_not_loaded_just_to_log(client, django_assert_num_queries, access_lines):
    # AuthenticationMiddleware leaves a lazy user; the access line must not evaluate it
    # (for a logged-in session that would read the session and the user).
    client.force_login(factories.user_create())
    with django_assert_num_queries(0):
        client.get("/healthz")
    assert access_lines()[0]["status"] == 200
