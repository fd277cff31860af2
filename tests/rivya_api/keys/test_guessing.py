"""Failed key lookups are limited per client address (issue 21, item 7)."""

from __future__ import annotations

import secrets

import pytest
from rest_framework.test import APIClient

from rivya_api.keys.tokens import secret_generate

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"AUTH_FAILURE_LIMIT": "5/min"}})]


def fresh_address() -> str:
    """An address no earlier run counted against (Redis keeps counters across runs for a minute)."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def client_from(address: str, secret: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_an_address_that_keeps_guessing_gets_429_with_retry_after(api_key):
    _, good = api_key
    address = fresh_address()
    codes = [client_from(address, secret_generate()).get("/api/v1/credits").json()["error"]["code"]
             for _ in range(5)]  # fmt: skip
    assert codes == ["invalid_api_key"] * 5
    response = client_from(address, secret_generate()).get("/api/v1/credits")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_failed_authentications"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Even a real key waits from that address; another address is not affected.
    assert client_from(address, good).get("/api/v1/credits").status_code == 429
    assert client_from(fresh_address(), good).get("/api/v1/credits").status_code == 200


def test_malformed_keys_count_and_good_ones_do_not(api_key):
    _, good = api_key
    address = fresh_address()
    for _ in range(10):
        assert client_from(address, good).get("/api/v1/credits").status_code == 200
    for _ in range(5):
        assert client_from(address, "not-a-key").get("/api/v1/credits").status_code == 401
    assert client_from(address, good).get("/api/v1/credits").status_code == 429


def test_x_forwarded_proto_from_a_client_is_not_trusted(api_client):
    # Absolute URLs the API builds (here: the OpenAPI document's server) keep the real scheme.
    response = api_client.get("/api/v1/credits", HTTP_X_FORWARDED_PROTO="https")
    assert response.wsgi_request.is_secure() is False
