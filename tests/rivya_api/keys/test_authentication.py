"""Bearer authentication: every outcome, its error code, and what the view sees."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_api.keys.services import api_key_revoke, api_key_roll
from tests.rivya_api.keys import clock as clock_module

pytestmark = [pytest.mark.urls("tests.rivya_api.keys.urls"), pytest.mark.django_db]

URL = "/api/v1/_test/whoami"
ERROR_KEYS = {"type", "code", "message", "param", "request_id"}


def assert_401(response, code: str) -> dict:
    assert response.status_code == 401, response.content
    body = json.loads(response.content)
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == code
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "x-ratelimit-limit-requests" not in response
    return body["error"]


def test_valid_key_authenticates_as_its_account(api_client, account):
    response = api_client.get(URL)
    assert response.status_code == 200, response.content
    assert response.json() == {"object": "whoami", "account": str(account.pk), "api_key": api_client.api_key.public_id}


def test_missing_key_is_401_missing_api_key(client):
    error = assert_401(client.get(URL), "missing_api_key")
    assert "Bearer" in error["message"]


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Token rvya_sk_" + "a" * 43,
        "Bearer",
        "Bearer ",
        "Bearer sk-" + "a" * 43,
        "Bearer rvya_sk_short",
        "Bearer rvya_sk_" + "a" * 42 + "!",
        "Bearer rvya_sk_" + "a" * 43 + " extra",
    ],
)
def test_malformed_header_is_401_invalid_api_key_format(client, header):
    assert_401(client.get(URL, HTTP_AUTHORIZATION=header), "invalid_api_key_format")


def test_non_ascii_header_is_malformed(client):
    assert_401(client.get(URL, HTTP_AUTHORIZATION="Bearer rvya_sk_é" + "a" * 43), "invalid_api_key_format")


def test_bearer_scheme_is_case_insensitive(client, api_key):
    _, secret = api_key
    assert client.get(URL, HTTP_AUTHORIZATION=f"bearer {secret}").status_code == 200


def test_unknown_well_formed_key_is_401_invalid_api_key(client, api_key):
    _, secret = api_key
    other = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    error = assert_401(client.get(URL, HTTP_AUTHORIZATION=f"Bearer {other}"), "invalid_api_key")
    assert 'error="invalid_token"' in client.get(URL, HTTP_AUTHORIZATION=f"Bearer {other}")["WWW-Authenticate"]
    assert other not in error["message"]


def test_revoked_key_is_401_api_key_revoked(api_client):
    assert api_client.get(URL).status_code == 200
    api_key_revoke(api_key=api_client.api_key)
    assert_401(api_client.get(URL), "api_key_revoked")


@pytest.mark.rivya_settings({"RIVYA_API": clock_module.CLOCKED})
def test_expired_key_is_401_api_key_expired(make_api_client, account):
    clock = clock_module.clock
    clock.now = timezone.now()
    client = make_api_client(account, expires_at=clock.now + timedelta(days=30))
    assert client.get(URL).status_code == 200
    clock.advance(days=30)
    error = assert_401(client.get(URL), "api_key_expired")
    assert "replacement" not in error["message"]


def test_key_sent_another_way_is_not_accepted(client, api_key):
    _, secret = api_key
    assert_401(client.get(URL, {"api_key": secret}), "missing_api_key")
    assert_401(client.get(URL, HTTP_X_API_KEY=secret), "missing_api_key")


@pytest.mark.rivya_settings({"RIVYA_API": clock_module.CLOCKED})
def test_roll_with_grace_both_keys_work_then_old_stops(client, api_key):
    clock = clock_module.clock
    clock.now = timezone.now()
    old, old_secret = api_key
    new, new_secret = api_key_roll(api_key=old, grace=timedelta(hours=1), now=clock.now)

    def status(secret: str) -> int:
        return client.get(URL, HTTP_AUTHORIZATION=f"Bearer {secret}").status_code

    assert status(old_secret) == 200
    assert status(new_secret) == 200
    clock.advance(minutes=59)
    assert status(old_secret) == 200
    clock.advance(minutes=1)
    error = assert_401(client.get(URL, HTTP_AUTHORIZATION=f"Bearer {old_secret}"), "api_key_expired")
    assert "replacement" in error["message"]
    assert status(new_secret) == 200


def test_roll_now_stops_the_old_key_at_once(client, api_key):
    old, old_secret = api_key
    _, new_secret = api_key_roll(api_key=old, grace=timedelta(0))
    assert_401(client.get(URL, HTTP_AUTHORIZATION=f"Bearer {old_secret}"), "api_key_expired")
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {new_secret}").status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer rvya_sk_" + "x" * 43, "garbage"])
def test_unmatched_path_is_404_with_or_without_a_key(client, api_key, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/api/v1/no-such-route", **headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_route"
    _, secret = api_key
    response = client.post("/api/v1/no-such-route", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 404
