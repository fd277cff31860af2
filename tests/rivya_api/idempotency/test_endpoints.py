"""The real POST endpoints get Idempotency-Key through AccountScopedMixin: no second object on retry."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import encode_multipart
from django.utils import timezone

from rivya_api.files.models import File
from rivya_webhooks.models import WebhookEndpoint
from rivya_webhooks.registry import event_type_register, event_type_unregister
from tests import media
from tests.rivya_api.files_fixtures import stored_files
from tests.rivya_webhooks.support import PUBLIC_IP, StaticResolver

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, boundary: str, key: str = "upload-1"):
    part = SimpleUploadedFile("reference.png", data, content_type="image/png")
    return client.post(
        "/api/v1/files",
        data=encode_multipart(boundary, {"purpose": "reference", "file": part}),
        content_type=f"multipart/form-data; boundary={boundary}",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_files_retry_creates_no_second_file(api_client, account, media_root):
    data = media.png()
    first = upload(api_client, data, "first-boundary")
    assert first.status_code == 201, first.content
    # A client library picks a new boundary on every retry; the upload is the same.
    retry = upload(api_client, data, "second-boundary-xyz")
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert File.objects.filter(account=account).count() == 1
    assert len(stored_files(media_root)) == 1

    other = upload(api_client, media.png(size=(32, 32)), "third-boundary")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert File.objects.filter(account=account).count() == 1


def test_files_retry_after_the_first_attempt_died_before_answering_returns_its_file(api_client, account, media_root):
    from datetime import timedelta

    from rivya_api.idempotency.models import IdempotencyRecord

    first = upload(api_client, media.png(), "first-boundary", key="died")
    assert IdempotencyRecord.objects.get(key="died").reference == first.json()["id"]
    # What a process killed after the insert and before storing its answer leaves behind.
    IdempotencyRecord.objects.filter(key="died").update(
        state=IdempotencyRecord.State.IN_FLIGHT,
        locked_until=timezone.now() - timedelta(seconds=1),
        completed_at=None,
        response_status=None,
        response_body=b"",
    )
    retry = upload(api_client, media.png(), "retry-boundary", key="died")
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == first.json()["id"]
    assert File.objects.filter(account=account).count() == 1
    assert len(stored_files(media_root)) == 1


def test_files_refused_upload_leaves_the_key_free(api_client, account):
    refused = upload(api_client, b"not an image at all", "b1")
    assert refused.status_code in (400, 415), refused.content
    accepted = upload(api_client, media.png(), "b2")
    assert accepted.status_code == 201, accepted.content
    assert "Idempotent-Replayed" not in accepted
    assert File.objects.filter(account=account).count() == 1


@pytest.fixture
def webhook_setup(rivya_settings):
    event_type_register("thing.created", "test")
    rivya_settings("RIVYA_WEBHOOKS", RESOLVER=StaticResolver({"hooks.example.com": [PUBLIC_IP]}))
    yield
    event_type_unregister("thing.created")


def create_endpoint(client, key, url="https://hooks.example.com/rivya"):
    body = {"url": url, "event_types": ["thing.created"]}
    return client.post("/api/v1/webhooks", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.usefixtures("webhook_setup")
def test_webhooks_retry_creates_no_second_endpoint(api_client, account):
    first = create_endpoint(api_client, "endpoint-1")
    assert first.status_code == 201, first.content
    retry = create_endpoint(api_client, "endpoint-1")
    assert retry["Idempotent-Replayed"] == "true"
    # The same endpoint and the same secret: the secret is shown only at creation, and a
    # client that lost that response to a timeout gets it again here.
    assert retry.content == first.content
    assert WebhookEndpoint.objects.filter(account=account).count() == 1
    other = create_endpoint(api_client, "endpoint-1", url="https://hooks.example.com/other")
    assert other.status_code == 422
    assert WebhookEndpoint.objects.filter(account=account).count() == 1


@pytest.mark.usefixtures("webhook_setup")
def test_webhooks_retried_rotation_rotates_once(api_client):
    created = create_endpoint(api_client, "endpoint-1").json()
    path = f"/api/v1/webhooks/{created['id']}/rotate-secret"
    first = api_client.post(path, HTTP_IDEMPOTENCY_KEY="rotate-1")
    assert first.status_code == 200, first.content
    retry = api_client.post(path, HTTP_IDEMPOTENCY_KEY="rotate-1")
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    endpoint = WebhookEndpoint.objects.get(public_id=created["id"])
    assert endpoint.signing_secrets(timezone.now()) == [first.json()["secret"], created["secret"]]
