"""HTTP API of webhooks: /api/v1/webhooks and /api/v1/webhook-events."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from rivya_api.webhooks.serializers import WebhookEndpointCreateInputSerializer
from rivya_webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from rivya_webhooks.registry import event_type_register, event_type_unregister, event_types
from rivya_webhooks.services import webhook_event_publish
from tests.rivya_webhooks.conftest import run_due
from tests.rivya_webhooks.receiver import Receiver
from tests.rivya_webhooks.support import PUBLIC_IP, FrozenClock, StaticResolver

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/rivya"
ERROR_KEYS = {"type", "code", "message", "param", "request_id"}


@pytest.fixture(autouse=True)
def _setup(rivya_settings):
    event_type_register("thing.created", "test")
    event_type_register("thing.deleted", "test")
    rivya_settings(
        "RIVYA_WEBHOOKS",
        RESOLVER=StaticResolver({"hooks.example.com": [PUBLIC_IP], "internal.example.com": ["10.0.0.7"]}),
    )
    yield
    event_type_unregister("thing.created")
    event_type_unregister("thing.deleted")


def error_of(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def create(client, **body):
    payload = {"url": URL, "event_types": ["thing.created"], **body}
    return client.post("/api/v1/webhooks", payload, format="json")


def test_create_shows_the_secret_once(api_client):
    response = create(api_client, description="main")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("we_")
    assert body["object"] == "webhook_endpoint"
    assert body["secret"].startswith("whsec_")
    assert body["event_types"] == ["thing.created"]
    assert body["enabled"] is True
    assert body["created_at"].endswith("Z")
    assert body["description"] == "main"
    got = api_client.get(f"/api/v1/webhooks/{body['id']}").json()
    listed = api_client.get("/api/v1/webhooks").json()
    assert "secret" not in got
    assert body["secret"] not in json.dumps(listed)
    assert listed["object"] == "list"
    assert [item["id"] for item in listed["data"]] == [body["id"]]


def test_the_subscription_field_documents_every_type_and_the_star():
    documented = WebhookEndpointCreateInputSerializer().fields["event_types"].help_text
    for event_type in event_types():
        if not event_type.name.startswith("thing."):  # this module's own
            assert f"`{event_type.name}`" in documented
    assert '`["*"]`' in documented


def test_unknown_event_type_is_a_400_naming_it(api_client):
    error = error_of(create(api_client, event_types=["thing.created", "thing.exploded"]), 400, "unknown_event_type")
    assert "thing.exploded" in error["message"]
    assert error["param"] == "event_types"
    # The message lists what is valid, "*" included (issue 22, finding 7).
    assert "Valid types: " in error["message"]
    for event_type in event_types():
        assert event_type.name in error["message"]
    assert '"*" for every type' in error["message"]
    assert error_of(create(api_client, event_types=[]), 400)["param"] == "event_types"
    assert error_of(create(api_client, event_types="*"), 400)["param"] == "event_types"
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("https://internal.example.com/x", "url_not_allowed"),
        ("https://127.0.0.1/x", "url_not_allowed"),
        ("https://[::ffff:169.254.169.254]/x", "url_not_allowed"),
        ("https://nowhere.example.com/x", "url_unresolvable"),
        ("http://hooks.example.com/x", "invalid_url"),
        ("https://u:p@hooks.example.com/x", "invalid_url"),
        ("ftp://hooks.example.com/x", "invalid_url"),
    ],
)
def test_bad_urls_are_400s_naming_url(api_client, url, code):
    assert error_of(create(api_client, url=url), 400, code)["param"] == "url"


def test_missing_fields_and_bad_json(api_client):
    assert error_of(api_client.post("/api/v1/webhooks", {}, format="json"), 400, "missing_parameter")["param"] in (
        "url",
        "event_types",
    )
    response = api_client.post("/api/v1/webhooks", data="{nope", content_type="application/json")
    error_of(response, 400, "invalid_json")


def test_requires_an_api_key(client):
    response = client.get("/api/v1/webhooks")
    error_of(response, 401)
    assert "Bearer" in response["WWW-Authenticate"]
    error_of(client.get("/api/v1/webhook-events"), 401)


def test_update_enable_and_delete(api_client):
    endpoint_id = create(api_client).json()["id"]
    path = f"/api/v1/webhooks/{endpoint_id}"
    response = api_client.patch(path, {"enabled": False, "event_types": ["*"], "description": "off"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["enabled"], body["disabled_reason"], body["event_types"]) == (False, "manual", ["*"])
    body = api_client.patch(path, {"enabled": True, "url": "https://hooks.example.com/v2"}, format="json").json()
    assert (body["enabled"], body["disabled_reason"], body["url"]) == (True, None, "https://hooks.example.com/v2")
    error_of(api_client.patch(path, {"url": "https://internal.example.com/"}, format="json"), 400, "url_not_allowed")
    error_of(api_client.put(path, {"enabled": True}, format="json"), 405)
    response = api_client.delete(path)
    assert response.json() == {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}
    error_of(api_client.get(path), 404, "not_found")


def test_rotate_secret_returns_a_new_secret(api_client):
    created = create(api_client).json()
    response = api_client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret")
    assert response.status_code == 200
    assert response.json()["secret"].startswith("whsec_")
    assert response.json()["secret"] != created["secret"]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.signing_secrets(timezone.now()) == [response.json()["secret"], created["secret"]]


def test_test_action_queues_a_webhook_test_event(api_client):
    endpoint_id = create(api_client, event_types=["thing.deleted"]).json()["id"]
    response = api_client.post(f"/api/v1/webhooks/{endpoint_id}/test")
    assert response.status_code == 202, response.content
    event = response.json()
    assert event["type"] == "webhook.test"
    assert event["envelope"]["data"]["endpoint_id"] == endpoint_id
    assert [d["endpoint_id"] for d in event["deliveries"]] == [endpoint_id]
    api_client.patch(f"/api/v1/webhooks/{endpoint_id}", {"enabled": False}, format="json")
    error_of(api_client.post(f"/api/v1/webhooks/{endpoint_id}/test"), 409, "endpoint_disabled")


def test_another_accounts_objects_are_404(api_client, make_account, make_api_client):
    endpoint_id = create(api_client).json()["id"]
    event_id = api_client.post(f"/api/v1/webhooks/{endpoint_id}/test").json()["id"]
    other = make_api_client(make_account())
    for method, path in [
        ("get", f"/api/v1/webhooks/{endpoint_id}"),
        ("patch", f"/api/v1/webhooks/{endpoint_id}"),
        ("delete", f"/api/v1/webhooks/{endpoint_id}"),
        ("post", f"/api/v1/webhooks/{endpoint_id}/rotate-secret"),
        ("post", f"/api/v1/webhooks/{endpoint_id}/test"),
        ("get", f"/api/v1/webhook-events/{event_id}"),
        ("post", f"/api/v1/webhook-events/{event_id}/redeliver"),
    ]:
        error_of(getattr(other, method)(path, {}, format="json"), 404, "not_found")
    assert other.get("/api/v1/webhooks").json()["data"] == []
    assert other.get("/api/v1/webhook-events").json()["data"] == []
    # Nor can one account redeliver its event to another's endpoint.
    other_endpoint = create(other).json()["id"]
    response = api_client.post(
        f"/api/v1/webhook-events/{event_id}/redeliver", {"endpoint_id": other_endpoint}, format="json"
    )
    assert error_of(response, 404, "not_found")["param"] == "endpoint_id"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("patch", "", {"enabled": False}), ("post", "/rotate-secret", {}), ("post", "/test", {})],
)
def test_an_endpoint_deleted_by_a_concurrent_request_is_a_404(api_client, monkeypatch, method, suffix, body):
    """Found by the view, deleted by another request before the service locks it (schemathesis hit it)."""
    from rivya_api.webhooks import views

    endpoint_id = create(api_client).json()["id"]
    found = views.webhook_endpoint_get

    def found_then_deleted(**kwargs):
        endpoint = found(**kwargs)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()
        return endpoint

    monkeypatch.setattr(views, "webhook_endpoint_get", found_then_deleted)
    response = getattr(api_client, method)(f"/api/v1/webhooks/{endpoint_id}{suffix}", body, format="json")
    error_of(response, 404, "not_found")
    assert not WebhookEvent.objects.filter(type="webhook.test").exists()


def test_lists_are_cursor_paginated(api_client):
    ids = [create(api_client).json()["id"] for _ in range(5)]
    first = api_client.get("/api/v1/webhooks?limit=2").json()
    assert [item["id"] for item in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    second = api_client.get(f"/api/v1/webhooks?limit=2&after={first['next_cursor']}").json()
    assert [item["id"] for item in second["data"]] == ids[::-1][2:4]
    error_of(api_client.get("/api/v1/webhooks?limit=0"), 400)


def test_event_log_matches_what_was_pushed(api_client, account, settings, rivya_settings):
    settings.DEBUG = True
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=True, TIMEOUT=0.5)
    clock = FrozenClock()
    with Receiver() as receiver:
        receiver.reply(status=500, body=b"not yet")
        created = create(api_client, url=receiver.url(), event_types=["*"]).json()
        event = webhook_event_publish(account=account, type="thing.created", data={"n": 1, "s": "ü"}, clock=clock)
        run_due(clock)
        receiver.reply(status=200, body=b"thanks")
        clock.advance(seconds=10)
        run_due(clock)
        pushed = receiver.requests

    body = api_client.get(f"/api/v1/webhook-events/{event.public_id}").json()
    assert body["id"] == event.public_id
    assert body["object"] == "webhook_event"
    assert body["envelope"] == json.loads(pushed[-1].body)
    assert Webhook(created["secret"]).verify(pushed[-1].body, pushed[-1].headers) == body["envelope"]
    (delivery,) = body["deliveries"]
    assert (delivery["endpoint_id"], delivery["state"], delivery["attempts_count"]) == (created["id"], "succeeded", 2)
    first, second = delivery["attempts"]
    assert (first["status_code"], first["error"], first["response_body"], first["trigger"]) == (
        500,
        "http_status",
        "not yet",
        "scheduled",
    )
    assert first["next_attempt_at"] is not None
    assert (second["status_code"], second["error"], second["response_body"]) == (200, None, "thanks")
    assert isinstance(second["latency_ms"], int)


def test_event_log_filters(api_client, account):
    endpoint_id = create(api_client, event_types=["*"]).json()["id"]
    endpoint = WebhookEndpoint.objects.get(public_id=endpoint_id)
    old = webhook_event_publish(account=account, type="thing.created", data={})
    WebhookEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    done = webhook_event_publish(account=account, type="thing.deleted", data={})
    WebhookDelivery.objects.filter(event=done).update(state="succeeded", next_attempt_at=None)
    failed = webhook_event_publish(account=account, type="thing.created", data={})
    WebhookDelivery.objects.filter(event=failed).update(state="failed", next_attempt_at=None)
    no_delivery = webhook_event_publish(account=account, type="thing.created", data={}, endpoints=[])

    def ids(query: str) -> set[str]:
        response = api_client.get(f"/api/v1/webhook-events{query}")
        assert response.status_code == 200, response.content
        return {item["id"] for item in response.json()["data"]}

    assert ids("") == {old.public_id, done.public_id, failed.public_id, no_delivery.public_id}
    assert ids("?type=thing.deleted") == {done.public_id}
    assert ids("?delivery_state=undelivered") == {old.public_id, failed.public_id}
    assert ids("?delivery_state=pending") == {old.public_id}
    assert ids("?delivery_state=failed") == {failed.public_id}
    assert ids("?delivery_state=succeeded") == {done.public_id}
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert old.public_id not in ids(f"?created_gte={since}")
    assert ids(f"?created_lt={since}") == {old.public_id}
    error = error_of(api_client.get("/api/v1/webhook-events?delivery_state=lost"), 400)
    assert error["param"] == "delivery_state"
    assert error_of(api_client.get("/api/v1/webhook-events?created_gte=yesterday"), 400)["param"] == "created_gte"
    assert endpoint.pk


def test_redeliver(api_client, account):
    endpoint_id = create(api_client, event_types=["*"]).json()["id"]
    event = webhook_event_publish(account=account, type="thing.created", data={})
    WebhookDelivery.objects.update(state="failed", next_attempt_at=None, retry_count=10)
    response = api_client.post(f"/api/v1/webhook-events/{event.public_id}/redeliver")
    assert response.status_code == 202, response.content
    (delivery,) = response.json()["deliveries"]
    assert (delivery["endpoint_id"], delivery["state"]) == (endpoint_id, "pending")
    assert WebhookDelivery.objects.get().next_trigger == "manual"
    response = api_client.post(
        f"/api/v1/webhook-events/{event.public_id}/redeliver", {"endpoint_id": endpoint_id}, format="json"
    )
    assert response.status_code == 202
    api_client.patch(f"/api/v1/webhooks/{endpoint_id}", {"enabled": False}, format="json")
    error_of(api_client.post(f"/api/v1/webhook-events/{event.public_id}/redeliver"), 409, "nothing_to_redeliver")
    error_of(api_client.post("/api/v1/webhook-events/evt_nope/redeliver"), 404, "not_found")


def test_openapi_documents_every_webhooks_operation(client):
    document = client.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    expected = {
        ("/api/v1/webhooks", "get"),
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks/{endpoint_id}", "get"),
        ("/api/v1/webhooks/{endpoint_id}", "patch"),
        ("/api/v1/webhooks/{endpoint_id}", "delete"),
        ("/api/v1/webhooks/{endpoint_id}/rotate-secret", "post"),
        ("/api/v1/webhooks/{endpoint_id}/test", "post"),
        ("/api/v1/webhook-events", "get"),
        ("/api/v1/webhook-events/{event_id}", "get"),
        ("/api/v1/webhook-events/{event_id}/redeliver", "post"),
    }
    for path, method in expected:
        operation = paths[path][method]
        assert "default" not in operation["responses"]
        assert "401" in operation["responses"]
        errors = [code for code in operation["responses"] if code.startswith(("4", "5"))]
        for code in errors:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}
    assert "secret" in json.dumps(document["components"]["schemas"]["WebhookEndpointWithSecretOutput"])
    assert "secret" not in document["components"]["schemas"]["WebhookEndpointOutput"]["properties"]
