"""The API keys settings page: create (secret once), roll with grace, revoke, audit trail, CSRF, login."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from rivya_api.keys.models import APIKey, APIKeyEvent

pytestmark = pytest.mark.django_db

KEYS = "/settings/api-keys"


def api_status(secret: str) -> tuple[int, str | None]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = client.get("/api/v1/models")
    code = response.json()["error"]["code"] if response.status_code >= 400 else None
    return response.status_code, code


def shown_secret(html: str) -> str:
    match = re.search(r'value="(rvya_sk_[^"]+)"', html)
    assert match, "no secret on the page"
    return match.group(1)


def test_pages_require_login(client):
    for path in ["/settings/", KEYS, f"{KEYS}/key_x", f"{KEYS}/key_x/roll", f"{KEYS}/key_x/revoke"]:
        response = client.get(path, follow=False)
        if path == "/settings/":
            response = client.get(response.url)
        assert response.status_code == 302, path
        assert response.url.startswith("/accounts/login/?next="), path


def test_log_in_through_the_login_page(member):
    client = Client()
    page = client.get("/accounts/login/?next=/settings/api-keys")
    assert page.status_code == 200
    assert 'name="password"' in page.content.decode()
    response = client.post(
        "/accounts/login/",
        {"username": member.user.username, "password": member.password, "next": KEYS},
    )
    assert response.status_code == 302
    assert response.url == KEYS
    assert client.get(KEYS).status_code == 200


def test_create_shows_the_secret_once_and_records_who_when_and_where(member):
    response = member.client.post(KEYS, {"name": "production", "expires_in_days": ""}, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    secret = shown_secret(html)
    assert "shown only this once" in html
    key = APIKey.objects.get(account=member.account, name="production")
    assert api_status(secret) == (200, None)

    page = member.client.get(KEYS).content.decode()
    assert secret not in page
    assert key.key_hash not in page
    assert f"{key.prefix}…{key.last4}" in page
    event = APIKeyEvent.objects.get(api_key=key)
    assert (event.action, event.actor, event.ip, event.source) == ("created", member.user, "203.0.113.7", "settings")
    activity = page.split('id="activity"')[1]
    assert "203.0.113.7" in activity
    assert member.user.username in activity
    assert "Created" in activity


def test_create_with_an_expiry_and_a_missing_name(member):
    response = member.client.post(KEYS, {"name": "", "expires_in_days": "30"})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not APIKey.objects.filter(account=member.account).exists()
    member.client.post(KEYS, {"name": "month", "expires_in_days": "30"})
    key = APIKey.objects.get(account=member.account)
    assert key.expires_at is not None
    assert (key.expires_at - key.created_at).days == 30


def test_every_action_needs_the_csrf_token(member, make_api_key):
    key, _ = make_api_key(member.account)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(member.user)
    assert strict.post(KEYS, {"name": "x"}).status_code == 403
    assert strict.post(f"{KEYS}/{key.public_id}/roll", {"grace": "now"}).status_code == 403
    assert strict.post(f"{KEYS}/{key.public_id}/revoke").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None
    assert key.replaced_by_id is None
    # With the token from the form, the same request goes through.
    form = strict.get(f"{KEYS}/{key.public_id}/revoke").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    assert strict.post(f"{KEYS}/{key.public_id}/revoke", {"csrfmiddlewaretoken": token}).status_code == 302


def test_roll_keeps_the_old_key_working_for_the_chosen_grace(member, make_api_key):
    old, old_secret = make_api_key(member.account, name="deploy")
    form = member.client.get(f"{KEYS}/{old.public_id}/roll").content.decode()
    assert 'value="24h"' in form
    assert 'value="now"' in form
    response = member.client.post(f"{KEYS}/{old.public_id}/roll", {"grace": "24h"}, REMOTE_ADDR="198.51.100.2")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    new_secret = shown_secret(response.content.decode())
    assert api_status(new_secret) == (200, None)
    assert api_status(old_secret) == (200, None)
    old.refresh_from_db()
    assert old.replaced_by.name == "deploy"
    assert 23 * 3600 < (old.expires_at - old.replaced_by.created_at).total_seconds() <= 24 * 3600
    rolled = APIKeyEvent.objects.get(api_key=old, action="rolled")
    assert (rolled.actor, rolled.ip, rolled.details["grace_seconds"]) == (member.user, "198.51.100.2", 86400)
    detail = member.client.get(f"{KEYS}/{old.public_id}").content.decode()
    assert "Rolled" in detail
    assert "grace 1 day" in detail
    assert old.replaced_by.public_id in detail


def test_roll_now_and_roll_twice(member, make_api_key):
    old, old_secret = make_api_key(member.account)
    response = member.client.post(f"{KEYS}/{old.public_id}/roll", {"grace": "now"})
    assert api_status(shown_secret(response.content.decode())) == (200, None)
    assert api_status(old_secret) == (401, "api_key_expired")
    again = member.client.post(f"{KEYS}/{old.public_id}/roll", {"grace": "now"})
    assert again.status_code == 400
    assert "only an active key can be rolled" in again.content.decode()
    assert member.client.post(f"{KEYS}/{old.public_id}/roll", {"grace": "forever"}).status_code == 400


def test_revoke_asks_first_then_refuses_the_key_everywhere(member, make_api_key):
    key, secret = make_api_key(member.account, name="laptop")
    confirm = member.client.get(f"{KEYS}/{key.public_id}/revoke")
    assert "cannot be undone" in confirm.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None  # a GET changes nothing
    response = member.client.post(f"{KEYS}/{key.public_id}/revoke", follow=True)
    assert "Revoked laptop" in response.content.decode()
    assert api_status(secret) == (401, "api_key_revoked")
    assert APIKeyEvent.objects.filter(api_key=key, action="revoked", actor=member.user).count() == 1
    page = member.client.get(KEYS).content.decode()
    row = page.split(f'data-key-id="{key.public_id}"')[1].split("</tr>")[0]
    assert "revoked" in row
    assert "/revoke" not in row
    assert "/roll" not in row


def row_of(page: str, key) -> str:
    return page.split(f'data-key-id="{key.public_id}"')[1].split("</tr>")[0]


def test_a_rolled_key_is_listed_as_rolling_with_its_end(member, make_api_key):
    """Issue 22 (4): never "active" once replaced; the list says until when it works."""
    old, _ = make_api_key(member.account, name="deploy")
    member.client.post(f"{KEYS}/{old.public_id}/roll", {"grace": "7d"})
    old.refresh_from_db()
    page = member.client.get(KEYS).content.decode()
    old_row, new_row = row_of(page, old), row_of(page, old.replaced_by)
    assert '<span class="badge status-rolling">rolling</span>' in old_row
    assert f'until <time datetime="{old.expires_at.isoformat()}' in old_row
    assert "/roll" not in old_row  # its replacement is what to roll now
    assert "/revoke" in old_row
    assert '<span class="badge status-active">active</span>' in new_row
    detail = member.client.get(f"{KEYS}/{old.public_id}").content.decode()
    assert "rolling</span> until" in detail
    assert "then only its replacement works" in detail


def test_revoking_a_replacement_offers_to_revoke_the_key_it_replaced(member, make_api_key):
    """Issue 22 (4): the confirm page names the older key still working; revoking takes both by default."""
    old, old_secret = make_api_key(member.account, name="deploy")
    member.client.post(f"{KEYS}/{old.public_id}/roll", {"grace": "7d"})
    old.refresh_from_db()
    new = old.replaced_by
    confirm = member.client.get(f"{KEYS}/{new.public_id}/revoke").content.decode()
    assert "This key replaced a key that still works" in confirm
    assert f"Also revoke <code>{old.masked}</code> (works until" in confirm
    assert 'name="predecessors" value="revoke" id="revoke-predecessors" checked' in confirm
    response = member.client.post(f"{KEYS}/{new.public_id}/revoke", {"predecessors": "revoke"}, follow=True)
    assert f"Revoked deploy ({new.masked}), deploy ({old.masked})" in response.content.decode()
    assert api_status(old_secret) == (401, "api_key_revoked")
    old.refresh_from_db()
    assert old.status == "revoked"


def test_revoking_without_the_predecessor_warns_that_it_still_works(member, make_api_key):
    old, old_secret = make_api_key(member.account, name="deploy")
    member.client.post(f"{KEYS}/{old.public_id}/roll", {"grace": "24h"})
    old.refresh_from_db()
    response = member.client.post(f"{KEYS}/{old.replaced_by.public_id}/revoke", follow=True)  # box unticked
    assert "The key it replaced still works until its grace period ends" in response.content.decode()
    assert api_status(old_secret) == (200, None)
    # The revoked key's confirm page still offers to finish the job.
    again = member.client.get(f"{KEYS}/{old.replaced_by.public_id}/revoke").content.decode()
    assert "but the key it replaced still works" in again
    member.client.post(f"{KEYS}/{old.replaced_by.public_id}/revoke", {"predecessors": "revoke"})
    assert api_status(old_secret) == (401, "api_key_revoked")


def test_another_accounts_keys_are_not_reachable(member, stranger, make_api_key):
    key, secret = make_api_key(member.account, name="members-only")
    page = stranger.client.get(KEYS).content.decode()
    assert "members-only" not in page
    assert key.public_id not in page
    for path in [f"{KEYS}/{key.public_id}", f"{KEYS}/{key.public_id}/roll", f"{KEYS}/{key.public_id}/revoke"]:
        assert stranger.client.get(path).status_code == 404, path
    assert stranger.client.post(f"{KEYS}/{key.public_id}/roll", {"grace": "now"}).status_code == 404
    assert stranger.client.post(f"{KEYS}/{key.public_id}/revoke").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
    assert key.replaced_by_id is None
    assert api_status(secret) == (200, None)


def test_activity_is_paginated(member, make_api_key):
    for index in range(23):
        make_api_key(member.account, name=f"k{index}")
    first = member.client.get(KEYS).content.decode()
    assert "Page 1 of 2" in first
    second = member.client.get(KEYS, {"page": 2}).content.decode()
    assert "Page 2 of 2" in second


def test_the_activity_names_other_keys_by_prefix_not_raw_id(member):
    """A roll's audit line names the replacement by its prefix and links it (issue 22, finding 1)."""
    from rivya_api.keys.services import api_key_create, api_key_roll

    key, _ = api_key_create(account=member.account, name="deploy")
    new_key, _ = api_key_roll(api_key=key)
    pages = ("/settings/api-keys", f"/settings/api-keys/{key.public_id}", f"/settings/api-keys/{new_key.public_id}")
    for path in pages:
        html = member.client.get(path).content.decode()
        details = [cell.split("</td>", 1)[0] for cell in html.split('data-label="Details"')[1:]]
        assert any(new_key.masked in cell or key.masked in cell for cell in details), path
        for cell in details:
            assert f">{new_key.public_id}<" not in cell and f">{key.public_id}<" not in cell, (path, cell)  # noqa: PT018
    listing = member.client.get("/settings/api-keys").content.decode()
    assert f'Replaced by <a href="/settings/api-keys/{new_key.public_id}"><code class="id"' in listing


def test_create_a_restricted_key_with_a_credit_limit_and_see_its_use(member):
    from rivya_billing.services import credits_grant, credits_reserve

    response = member.client.post(
        KEYS,
        {
            "name": "customer",
            "expires_in_days": "",
            "scopes": ["models:read", "generations:write"],
            "models": ["rivya-image-1"],
            "credit_limit": "20",
            "credit_limit_window": "month",
        },
    )
    assert response.status_code == 200, response.content
    key = APIKey.objects.get(account=member.account, name="customer")
    assert key.scopes == ["models:read", "generations:write"]
    assert key.allowed_models == ["rivya-image-1"]
    credits_grant(account=member.account, amount=100, reference="grant")
    credits_reserve(account=member.account, amount=7, reference="work", spend_limit=key.spend_limit_id)
    row = row_of(member.client.get(KEYS).content.decode(), key)
    assert "7 of 20 used this month (UTC)" in row
    detail = member.client.get(f"{KEYS}/{key.public_id}").content.decode()
    assert "7 of 20 used this month (UTC)" in detail
    assert "<code>generations:write</code>" in detail
    assert "<code>rivya-image-1</code>" in detail

    raised = member.client.post(f"{KEYS}/{key.public_id}", {"credit_limit": "50", "credit_limit_window": "day"})
    assert raised.status_code == 302
    assert "of 50 used today (UTC)" in member.client.get(f"{KEYS}/{key.public_id}").content.decode()
    removed = member.client.post(f"{KEYS}/{key.public_id}", {"credit_limit": "", "credit_limit_window": "total"})
    assert removed.status_code == 302
    key.refresh_from_db()
    assert key.spend_limit_id is None
    bad = member.client.post(f"{KEYS}/{key.public_id}", {"credit_limit": "-3", "credit_limit_window": "day"})
    assert bad.status_code == 400
    assert APIKeyEvent.objects.filter(api_key=key, action="updated").count() == 2


def test_a_key_created_without_restrictions_has_the_default_scopes(member):
    member.client.post(KEYS, {"name": "plain", "expires_in_days": ""})
    key = APIKey.objects.get(account=member.account, name="plain")
    assert "keys:write" not in key.scopes
    assert key.allowed_models is None
    assert key.spend_limit_id is None
