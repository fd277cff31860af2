"""The provisioning API (``/keys``, ``/keys/{id}``, ``/key``), allow-lists and credit limits through HTTP."""

from __future__ import annotations

import pytest

from rivya_api.generations.models import GenerationTask
from rivya_api.keys.models import APIKey, APIKeyEvent
from rivya_api.keys.scopes import DEFAULT_SCOPES, SCOPES
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant, credits_release
from rivya_webhooks.models import WebhookEvent
from tests.openapi import assert_matches_openapi
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]

ADMIN_SCOPES = list(SCOPES)


@pytest.fixture
def admin(account, make_api_client):
    """A client whose key has every scope, keys:* included (like a platform's provisioning key)."""
    return make_api_client(account, scopes=ADMIN_SCOPES)


def error(response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code, body
    if param is not None:
        assert body["param"] == param
    return body


def create(client, **body):
    return client.post("/api/v1/keys", body, format="json")


def as_client(secret: str):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_create_a_restricted_limited_key_shows_the_secret_once(admin, account):
    response = create(
        admin,
        name="customer-42",
        scopes=["generations:write", "models:read"],
        models=["test-image"],
        credit_limit={"credits": 10, "window": "day"},
    )
    assert response.status_code == 201, response.content
    assert_matches_openapi(response, "post", "/api/v1/keys")
    body = response.json()
    assert body["object"] == "api_key"
    assert body["id"].startswith("key_")
    assert body["secret"].startswith("rvya_sk_")
    assert body["scopes"] == ["models:read", "generations:write"]  # canonical order
    assert body["models"] == ["test-image"]
    assert body["status"] == "active"
    limit = body["credit_limit"]
    assert (limit["credits"], limit["window"], limit["used"]) == (10, "day", 0)
    assert limit["resets_at"].endswith("T00:00:00Z")
    again = admin.get(f"/api/v1/keys/{body['id']}")
    assert again.status_code == 200
    assert_matches_openapi(again, "get", "/api/v1/keys/{key_id}")
    assert "secret" not in again.json()
    key = APIKey.objects.get(public_id=body["id"])
    assert key.account_id == account.pk
    event = APIKeyEvent.objects.get(api_key=key)
    assert event.source == "api"
    assert event.details["granted_by"] == admin.api_key.public_id
    assert "rvya_sk_" not in str(event.details)


def test_default_scopes_and_every_model(admin):
    body = create(admin, name="plain").json()
    assert body["scopes"] == list(DEFAULT_SCOPES)
    assert body["models"] is None
    assert body["credit_limit"] is None


def test_list_is_newest_first_with_a_cursor(admin):
    ids = [create(admin, name=f"k{i}").json()["id"] for i in range(3)]
    page = admin.get("/api/v1/keys?limit=2")
    assert_matches_openapi(page, "get", "/api/v1/keys")
    body = page.json()
    assert [k["id"] for k in body["data"]] == [ids[2], ids[1]]
    assert body["has_more"] is True
    rest = admin.get(f"/api/v1/keys?limit=2&after={body['next_cursor']}").json()
    assert [k["id"] for k in rest["data"]] == [ids[0], admin.api_key.public_id]
    assert rest["has_more"] is False


def test_never_wider_than_the_creating_key(account, make_api_client):
    provisioner = make_api_client(account, scopes=["keys:write", "generations:write"], models=["test-image"])
    error(
        create(provisioner, scopes=["generations:write", "files:write"], models=["test-image"]),
        403,
        "insufficient_scope",
        "scopes",
    )
    error(create(provisioner, scopes=["keys:read"], models=["test-image"]), 403, "insufficient_scope", "scopes")
    error(create(provisioner, scopes=["generations:write"], models=["test-audio"]), 403, "insufficient_scope", "models")
    error(create(provisioner, scopes=["generations:write"]), 403, "insufficient_scope", "models")  # all models
    error(create(provisioner, name="defaults"), 403, "insufficient_scope", "scopes")
    ok = create(provisioner, scopes=["generations:write"], models=["test-image"])
    assert ok.status_code == 201, ok.content
    child = ok.json()["id"]
    error(provisioner.patch(f"/api/v1/keys/{child}", {"models": None}, format="json"), 403, "insufficient_scope")
    error(
        provisioner.patch(f"/api/v1/keys/{child}", {"models": ["test-video"]}, format="json"), 403, "insufficient_scope"
    )
    assert APIKey.objects.filter(account=account).count() == 2


def test_reading_and_writing_keys_need_their_scopes(account, make_api_client):
    reader = make_api_client(account, scopes=["keys:read"])
    assert reader.get("/api/v1/keys").status_code == 200
    body = error(create(reader, name="x"), 403, "insufficient_scope")
    assert "keys:write" in body["message"]
    plain = make_api_client(account)  # default scopes: no keys:*
    assert "keys:read" in error(plain.get("/api/v1/keys"), 403, "insufficient_scope")["message"]


def test_another_accounts_key_is_404(admin, make_account, make_api_key):
    stranger, _ = make_api_key(make_account())
    for method in ("get", "patch", "delete"):
        response = getattr(admin, method)(f"/api/v1/keys/{stranger.public_id}", {}, format="json")
        error(response, 404, "key_not_found", "key_id")
    stranger.refresh_from_db()
    assert stranger.revoked_at is None
    assert stranger.public_id not in str(admin.get("/api/v1/keys").json())


def test_patch_changes_name_models_and_limit(admin):
    key_id = create(admin, name="a", scopes=["generations:write"]).json()["id"]
    response = admin.patch(
        f"/api/v1/keys/{key_id}",
        {"name": "b", "models": ["test-image"], "credit_limit": {"credits": 7, "window": "month"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert_matches_openapi(response, "patch", "/api/v1/keys/{key_id}")
    body = response.json()
    assert (body["name"], body["models"], body["credit_limit"]["credits"]) == ("b", ["test-image"], 7)
    assert body["credit_limit"]["resets_at"].endswith("-01T00:00:00Z")
    removed = admin.patch(f"/api/v1/keys/{key_id}", {"credit_limit": None, "models": None}, format="json").json()
    assert removed["credit_limit"] is None
    assert removed["models"] is None
    error(
        admin.patch(f"/api/v1/keys/{key_id}", {"scopes": ["keys:read"]}, format="json"),
        400,
        "unknown_parameter",
        "scopes",
    )
    error(
        admin.patch(f"/api/v1/keys/{key_id}", {"credit_limit": {"credits": -1}}, format="json"),
        400,
        "min_value",
        "credit_limit.credits",
    )
    error(
        admin.patch(f"/api/v1/keys/{key_id}", {"models": ["nope"]}, format="json"),
        400,
        "invalid_parameter",
        "models[0]",
    )


def test_a_key_cannot_lift_its_own_limit(account, make_api_client):
    client = make_api_client(account, scopes=ADMIN_SCOPES)
    key_id = client.api_key.public_id
    error(
        client.patch(f"/api/v1/keys/{key_id}", {"credit_limit": None}, format="json"),
        403,
        "insufficient_scope",
        "credit_limit",
    )
    assert client.patch(f"/api/v1/keys/{key_id}", {"name": "renamed"}, format="json").status_code == 200


def test_delete_revokes(admin):
    created = create(admin, name="gone", scopes=["models:read"]).json()
    response = admin.delete(f"/api/v1/keys/{created['id']}")
    assert response.status_code == 200, response.content
    assert_matches_openapi(response, "delete", "/api/v1/keys/{key_id}")
    assert response.json()["status"] == "revoked"
    error(as_client(created["secret"]).get("/api/v1/models"), 401, "api_key_revoked")
    assert admin.delete(f"/api/v1/keys/{created['id']}").json()["status"] == "revoked"


def test_get_key_shows_the_calling_key_and_its_use(admin, account):
    credits_grant(account=account, amount=100, reference="grant")
    created = create(admin, scopes=["generations:write"], credit_limit={"credits": 10}).json()
    customer = as_client(created["secret"])
    assert (
        customer.post(
            "/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}}, format="json"
        ).status_code
        == 202
    )
    response = customer.get("/api/v1/key")
    assert response.status_code == 200
    assert_matches_openapi(response, "get", "/api/v1/key")
    body = response.json()
    assert body["id"] == created["id"]
    assert body["credit_limit"] == {"credits": 10, "window": "total", "used": 4, "resets_at": None}


def test_model_allow_list_filters_the_catalog_and_refuses_other_models(admin, account):
    credits_grant(account=account, amount=100, reference="grant")
    secret = create(admin, scopes=["models:read", "generations:write"], models=["test-image"]).json()["secret"]
    customer = as_client(secret)
    assert [m["id"] for m in customer.get("/api/v1/models").json()["data"]] == ["test-image"]
    assert customer.get("/api/v1/models/test-image").status_code == 200
    error(customer.get("/api/v1/models/test-audio"), 403, "model_not_allowed", "model")
    response = customer.post("/api/v1/generations", {"model": "test-audio", "input": {"prompt": "x"}}, format="json")
    error(response, 403, "model_not_allowed", "model")
    assert_matches_openapi(response, "post", "/api/v1/generations")
    dry = customer.post("/api/v1/generations", {"model": "test-audio", "input": {}, "dry_run": True}, format="json")
    error(dry, 403, "model_not_allowed", "model")
    assert not GenerationTask.objects.exists()


def test_the_limit_refuses_with_402_and_is_announced_once_per_window(admin, account):
    credits_grant(account=account, amount=100, reference="grant")
    admin.post(
        "/api/v1/webhooks", {"url": "https://example.com/h", "event_types": ["key.credit_limit_reached"]}, format="json"
    )
    created = create(admin, scopes=["generations:write"], credit_limit={"credits": 10, "window": "day"}).json()
    customer = as_client(created["secret"])

    def submit():
        return customer.post("/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}}, format="json")

    assert submit().status_code == 202  # used 4
    assert submit().status_code == 202  # used 8
    refused = submit()  # 12 > 10
    body = error(refused, 402, "key_credit_limit_reached")
    assert refused["x-should-retry"] == "false"
    assert "8 of 10" in body["message"]
    assert "resets at" in body["message"]
    assert_matches_openapi(refused, "post", "/api/v1/generations")
    assert wallet_get(account=account).held == 8
    assert GenerationTask.objects.count() == 2
    events = WebhookEvent.objects.filter(type="key.credit_limit_reached")
    assert events.count() == 1
    data = events.get().envelope["data"]
    assert data["key"]["id"] == created["id"]
    assert data["credit_limit"]["credits"] == 10
    error(submit(), 402, "key_credit_limit_reached")
    assert events.count() == 1  # once per window
    # Released credits stop counting.
    task = GenerationTask.objects.order_by("created_at").first()
    credits_release(account=account, reference=task.public_id)
    assert customer.get("/api/v1/key").json()["credit_limit"]["used"] == 4
    assert submit().status_code == 202


def test_a_failed_announcement_does_not_change_the_402(admin, account, monkeypatch):
    from rivya_api.keys import limits

    def broken(**kwargs):
        raise RuntimeError("webhooks down")

    monkeypatch.setattr(limits, "webhook_event_publish", broken)
    credits_grant(account=account, amount=100, reference="grant")
    secret = create(admin, scopes=["generations:write"], credit_limit={"credits": 3}).json()["secret"]
    response = as_client(secret).post(
        "/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}}, format="json"
    )
    error(response, 402, "key_credit_limit_reached")
    assert not WebhookEvent.objects.filter(type="key.credit_limit_reached").exists()
