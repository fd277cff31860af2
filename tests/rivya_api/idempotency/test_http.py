"""Idempotency-Key on a POST view that only inherits ``AccountScopedMixin``."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connections
from django.test.client import encode_multipart
from django.utils import timezone
from rest_framework.test import APIClient

from rivya_api.idempotency.models import IdempotencyRecord
from rivya_api.idempotency.services import idempotency_records_purge
from rivya_api.keys.services import api_key_roll
from tests.rivya_api.idempotency.urls import HOLD, STARTED, executions

pytestmark = [pytest.mark.urls("tests.rivya_api.idempotency.urls"), pytest.mark.django_db]

WIDGETS = "/api/v1/_test/widgets"
ERROR_KEYS = {"type", "code", "message", "param", "request_id"}


def post(client, body, key=None, path=WIDGETS, **extra):
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **extra)


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response["X-Request-Id"]
    return body["error"]


def test_retry_replays_the_first_response_unchanged(api_client, account):
    first = post(api_client, {"name": "alpha", "tags": ["a", "b"]}, key="key-1")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    retry = post(api_client, {"name": "alpha", "tags": ["a", "b"]}, key="key-1")
    assert retry.status_code == 201
    assert retry.content == first.content
    assert retry["Location"] == first["Location"]
    assert retry["Content-Type"] == first["Content-Type"]
    assert retry["Idempotent-Replayed"] == "true"
    # Per-request headers are the retry's own, not replayed.
    assert retry["X-Request-Id"] != first["X-Request-Id"]
    assert executions(account) == 1


def test_json_is_compared_by_meaning(api_client, account):
    first = post(api_client, '{"name": "alpha", "tags": ["a", "b"]}', key="key-1")
    retry = post(api_client, '{"tags":["a","b"],\n  "name":"alpha"}', key="key-1")
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert executions(account) == 1


def test_without_a_key_every_post_executes(api_client, account):
    post(api_client, {"name": "alpha"})
    post(api_client, {"name": "alpha"})
    assert executions(account) == 2
    assert not IdempotencyRecord.objects.exists()


def test_different_body_with_the_same_key_is_422(api_client, account):
    post(api_client, {"name": "alpha"}, key="key-1")
    error = assert_error(post(api_client, {"name": "beta"}, key="key-1"), 422, "idempotency_key_reused")
    assert error["param"] == "Idempotency-Key"
    assert error["type"] == "invalid_request_error"
    # Array order and explicit values are part of the meaning.
    post(api_client, {"name": "alpha", "tags": ["a", "b"]}, key="key-2")
    assert_error(post(api_client, {"name": "alpha", "tags": ["b", "a"]}, key="key-2"), 422, "idempotency_key_reused")
    assert executions(account) == 2


def test_same_key_on_another_path_is_422(api_client, account):
    post(api_client, {"name": "alpha"}, key="key-1")
    response = api_client.post(
        "/api/v1/_test/uploads",
        data=encode_multipart("b1", {"purpose": "x"}),
        content_type="multipart/form-data; boundary=b1",
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    assert_error(response, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "tab\tinside", "caf\u00e9", '""'],
    ids=["empty", "too-long", "control-char", "non-ascii", "empty-sf-string"],
)
def test_malformed_key_is_400_and_nothing_runs(api_client, account, key):
    response = post(api_client, {"name": "alpha"}, key=key)
    error = assert_error(response, 400, "idempotency_key_invalid")
    assert error["param"] == "Idempotency-Key"
    assert executions(account) == 0
    assert not IdempotencyRecord.objects.exists()


def test_longest_key_and_structured_field_form(api_client, account):
    longest = "k" * 255
    assert post(api_client, {"name": "alpha"}, key=longest).status_code == 201
    assert post(api_client, {"name": "alpha"}, key=longest)["Idempotent-Replayed"] == "true"
    # The IETF draft's sf-string form names the same key as the bare token.
    post(api_client, {"name": "beta"}, key="8e03978e-40d5-43e8-bc93-6894a57f9324")
    replay = post(api_client, {"name": "beta"}, key='"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    assert replay["Idempotent-Replayed"] == "true"
    assert executions(account) == 2


def test_another_accounts_identical_key_is_independent(make_account, make_api_client):
    one, two = make_account(), make_account()
    client_one, client_two = make_api_client(one), make_api_client(two)
    first_one = post(client_one, {"name": "alpha"}, key="shared-key")
    first_two = post(client_two, {"name": "alpha"}, key="shared-key")
    assert first_two.status_code == 201
    assert "Idempotent-Replayed" not in first_two
    assert first_two.json()["id"] != first_one.json()["id"]
    assert post(client_one, {"name": "alpha"}, key="shared-key").content == first_one.content
    assert post(client_two, {"name": "alpha"}, key="shared-key").content == first_two.content
    assert (executions(one), executions(two)) == (1, 1)


def test_retry_after_rolling_the_api_key_still_replays(account, make_api_client):
    old_client = make_api_client(account)
    first = post(old_client, {"name": "alpha"}, key="key-1")
    _, new_secret = api_key_roll(api_key=old_client.api_key)
    new_client = APIClient()
    new_client.credentials(HTTP_AUTHORIZATION=f"Bearer {new_secret}")
    assert post(old_client, {"name": "alpha"}, key="key-1").status_code == 401
    retry = post(new_client, {"name": "alpha"}, key="key-1")
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert executions(account) == 1


def test_validation_error_does_not_consume_the_key(api_client, account):
    assert_error(post(api_client, {"name": ""}, key="key-1"), 400, "blank")
    assert not IdempotencyRecord.objects.exists()
    corrected = post(api_client, {"name": "alpha"}, key="key-1")
    assert corrected.status_code == 201
    assert "Idempotent-Replayed" not in corrected
    assert executions(account) == 1


def test_unreadable_body_does_not_consume_the_key(api_client, account):
    assert_error(post(api_client, "{not json", key="key-1"), 400, "invalid_json")
    assert post(api_client, {"name": "alpha"}, key="key-1").status_code == 201


def test_authentication_failure_stores_nothing(client, account):
    response = post(client, {"name": "alpha"}, key="key-1", HTTP_AUTHORIZATION="Bearer rvya_sk_wrong")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.rivya_settings({"RIVYA_API": {"RATE_LIMIT": "1/min"}})
def test_rate_limited_request_stores_nothing(api_client, account):
    assert post(api_client, {"name": "alpha"}, key="key-1").status_code == 201
    assert_error(post(api_client, {"name": "beta"}, key="key-2"), 429, "rate_limit_exceeded")
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["key-1"]


def test_error_outcomes_are_stored_and_replayed(api_client, account):
    first = post(api_client, {"name": "alpha", "outcome": "payment_required"}, key="key-1")
    assert_error(first, 402, "insufficient_credits")
    retry = post(api_client, {"name": "alpha", "outcome": "payment_required"}, key="key-1")
    assert retry.status_code == 402
    assert retry.content == first.content  # the first request's request_id included
    assert retry["Idempotent-Replayed"] == "true"
    assert executions(account) == 1


def test_a_crash_after_execution_began_is_replayed_as_the_same_500(api_client, account, caplog):
    first = post(api_client, {"name": "alpha", "outcome": "crash"}, key="key-1")
    error = assert_error(first, 500, "internal_error")
    assert "crashed" not in error["message"]
    assert any(r.name == "rivya_api.errors" for r in caplog.records)
    retry = post(api_client, {"name": "alpha", "outcome": "crash"}, key="key-1")
    assert retry.status_code == 500
    assert retry.content == first.content
    assert retry["Idempotent-Replayed"] == "true"
    assert executions(account) == 1


def test_a_503_is_not_stored_and_the_key_is_free_after_its_retry_after(api_client, account):
    """Stored, "unavailable" would be replayed to every retry for good (the PostgreSQL fault test saw it)."""
    body = {"name": "alpha", "outcome": "unavailable"}
    first = post(api_client, body, key="key-1")
    assert_error(first, 503, "service_unavailable")
    record = IdempotencyRecord.objects.get(key="key-1")
    assert record.state == IdempotencyRecord.State.IN_FLIGHT
    lapses_in = (record.locked_until - timezone.now()).total_seconds()
    assert 0 < lapses_in <= int(first["Retry-After"])
    # Within Retry-After the outcome is unknown: in flight, not a replay.
    assert_error(post(api_client, body, key="key-1"), 409, "idempotency_key_in_flight")
    IdempotencyRecord.objects.update(locked_until=timezone.now() - timedelta(seconds=1))  # Retry-After passed
    retry = post(api_client, {"name": "alpha"}, key="key-2")  # an unrelated key is unaffected
    assert retry.status_code == 201
    again = post(api_client, body, key="key-1")
    assert_error(again, 503, "service_unavailable")
    assert "Idempotent-Replayed" not in again  # it ran again rather than replaying
    assert executions(account) == 3


def test_expired_key_runs_as_a_new_request(api_client, account):
    post(api_client, {"name": "alpha"}, key="key-1")
    # 24 hours later (the record's clock is moved, not the test's).
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    again = post(api_client, {"name": "beta"}, key="key-1")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert executions(account) == 2
    assert idempotency_records_purge() == 0  # the key's new record is live


def test_get_ignores_the_header(api_client):
    response = api_client.get(WIDGETS, HTTP_IDEMPOTENCY_KEY="x" * 300)
    assert response.status_code == 200
    assert not IdempotencyRecord.objects.exists()


def test_opted_out_view_executes_every_time(api_client, account):
    for _ in range(2):
        response = api_client.post("/api/v1/_test/not-idempotent", HTTP_IDEMPOTENCY_KEY="key-1")
        assert response.status_code == 201
    assert executions(account) == 2
    assert not IdempotencyRecord.objects.exists()


def multipart(client, fields, boundary, key="up-1"):
    return client.post(
        "/api/v1/_test/uploads",
        data=encode_multipart(boundary, fields),
        content_type=f"multipart/form-data; boundary={boundary}",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def upload(name, content):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="image/png")


def test_multipart_is_compared_by_fields_and_file_hash_not_boundary(api_client, account):
    first = multipart(api_client, {"purpose": "reference", "file": upload("a.png", b"\x89PNG one")}, "boundary-one")
    assert first.status_code == 201, first.content
    assert first.json()["sha256"]  # the view still read the file after it was hashed
    retry = multipart(api_client, {"purpose": "reference", "file": upload("a.png", b"\x89PNG one")}, "another-boundary")
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    changed = multipart(api_client, {"purpose": "reference", "file": upload("a.png", b"\x89PNG two")}, "b3")
    assert_error(changed, 422, "idempotency_key_reused")
    other_field = multipart(api_client, {"purpose": "other", "file": upload("a.png", b"\x89PNG one")}, "b4")
    assert_error(other_field, 422, "idempotency_key_reused")
    assert executions(account) == 1


@pytest.mark.django_db(transaction=True)
def test_retry_while_the_first_is_running_is_409_then_replays(account, make_api_client):
    client, first_client = make_api_client(account), make_api_client(account)
    Group.objects.create(name=HOLD)
    results = {}
    body = {"name": "slow", "hold": True}

    def first_attempt():
        try:
            results["first"] = post(first_client, body, key="k")
        finally:
            connections.close_all()

    first = threading.Thread(target=first_attempt)
    first.start()
    try:
        deadline = time.monotonic() + 10
        while not Group.objects.filter(name__startswith=STARTED).exists():
            assert time.monotonic() < deadline, "the first attempt never started"
            time.sleep(0.02)
        running = post(client, body, key="k")
        error = assert_error(running, 409, "idempotency_key_in_flight")
        assert error["type"] == "conflict_error"
        assert running["Retry-After"] == "1"
        # A different request under the running key is still a 422, never a 409.
        assert_error(post(client, {"name": "other"}, key="k"), 422, "idempotency_key_reused")
    finally:
        Group.objects.filter(name=HOLD).delete()
        first.join(30)
    assert results["first"].status_code == 201
    replay = post(client, body, key="k")
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == results["first"].content
    assert executions(account) == 1
