"""Django admin: list, create with the secret shown once, roll and revoke actions (Django's test client)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from rivya_api.keys.models import APIKey, APIKeyEvent
from rivya_api.keys.services import api_key_roll
from rivya_api.keys.tokens import secret_hash

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:rivya_api_apikey_changelist")
ADD = reverse("admin:rivya_api_apikey_add")


def change_url(key: APIKey) -> str:
    return reverse("admin:rivya_api_apikey_change", args=[key.pk])


def assert_never_shown(response, key: APIKey, secret: str) -> None:
    html = response.content.decode()
    assert secret not in html
    assert key.key_hash not in html


def test_changelist_shows_masked_key_name_account_last_used_and_status(admin_client, api_key, make_api_key, account):
    key, secret = api_key
    revoked, revoked_secret = make_api_key(account, name="old deploy key")
    revoked.revoked_at = timezone.now()
    revoked.save()
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert f"{key.prefix}…{key.last4}" in html
    assert "test key" in html
    assert "old deploy key" in html
    assert str(account) in html
    assert "active" in html
    assert "revoked" in html
    assert "Last used at" in html
    assert_never_shown(response, key, secret)
    assert_never_shown(response, revoked, revoked_secret)
    only_revoked = admin_client.get(CHANGELIST, {"status": "revoked"}).content.decode()
    assert revoked.masked in only_revoked
    assert key.masked not in only_revoked
    only_active = admin_client.get(CHANGELIST, {"status": "active"}).content.decode()
    assert key.masked in only_active
    assert revoked.masked not in only_active


def test_create_shows_the_secret_once_in_the_admin_message(admin_client, admin_user, account):
    response = admin_client.post(
        ADD, {"account": account.pk, "name": "ci runner", "expires_at_0": "", "expires_at_1": ""}
    )
    assert response.status_code == 200, response.content
    key = APIKey.objects.get(name="ci runner")
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1
    secret = messages[0].split("<code>")[1].split("</code>")[0]
    assert secret.startswith("rvya_sk_")
    assert secret_hash(secret) == key.key_hash
    assert key.account_id == account.pk
    assert key.created_by == admin_user
    assert "no-store" in response["Cache-Control"]
    # Nothing kept it: not the message cookie, not the session, not a later page.
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert all(secret not in str(value) for value in admin_client.session.values())
    for url in (CHANGELIST, change_url(key), reverse("admin:rivya_api_apikeyevent_changelist")):
        later = admin_client.get(url)
        assert later.status_code == 200
        assert_never_shown(later, key, secret)
    event = key.events.get()
    assert (event.action, event.actor, event.source, event.ip) == ("created", admin_user, "admin", "127.0.0.1")


def test_create_refuses_an_expiry_in_the_past(admin_client, account):
    past = timezone.now() - timedelta(days=1)
    response = admin_client.post(
        ADD,
        {"account": account.pk, "name": "x", "expires_at_0": past.strftime("%Y-%m-%d"), "expires_at_1": "00:00:00"},
    )
    assert response.status_code == 200
    assert "must be in the future" in response.content.decode()
    assert not APIKey.objects.exists()


def test_key_page_is_read_only_and_keys_cannot_be_deleted(admin_client, api_key):
    key, secret = api_key
    response = admin_client.get(change_url(key))
    assert response.status_code == 200
    assert_never_shown(response, key, secret)
    assert key.masked in response.content.decode()
    response = admin_client.post(change_url(key), {"name": "renamed"})
    assert response.status_code == 403
    delete = reverse("admin:rivya_api_apikey_delete", args=[key.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert APIKey.objects.get(pk=key.pk).name == "test key"


def test_revoke_action(admin_client, admin_user, api_key, client):
    key, secret = api_key
    response = admin_client.post(CHANGELIST, {"action": "revoke_keys", "_selected_action": [key.pk]}, follow=True)
    assert response.status_code == 200
    assert "Revoked 1 key(s)." in [str(m) for m in response.context["messages"]]
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert key.status == "revoked"
    event = key.events.get(action="revoked")
    assert (event.actor, event.source, event.ip) == (admin_user, "admin", "127.0.0.1")


def test_roll_action_issues_replacement_shown_once_with_grace(admin_client, admin_user, api_key):
    key, old_secret = api_key
    before = timezone.now()
    response = admin_client.post(CHANGELIST, {"action": "roll_keys", "_selected_action": [key.pk], "grace": "24h"})
    assert response.status_code == 200
    key.refresh_from_db()
    new = key.replaced_by
    assert new is not None
    assert new.name == key.name
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1
    secret = messages[0].split("<code>")[1].split("</code>")[0]
    assert secret_hash(secret) == new.key_hash
    assert before + timedelta(hours=24) <= key.expires_at <= timezone.now() + timedelta(hours=24)
    assert key.status == "rolling"
    rolled = key.events.get(action="rolled")
    assert rolled.details["replaced_by"] == new.public_id
    assert rolled.details["grace_seconds"] == 86400
    assert (rolled.actor, rolled.ip) == (admin_user, "127.0.0.1")
    later = admin_client.get(CHANGELIST)
    assert_never_shown(later, new, secret)
    assert_never_shown(later, key, old_secret)


def test_roll_action_defaults_to_a_day_of_grace(admin_client, api_key):
    key, _ = api_key
    form = admin_client.get(CHANGELIST).content.decode()
    assert '<option value="24h" selected>24 hours</option>' in form
    before = timezone.now()
    response = admin_client.post(CHANGELIST, {"action": "roll_keys", "_selected_action": [key.pk]})
    assert response.status_code == 200
    key.refresh_from_db()
    assert key.replaced_by is not None
    assert before + timedelta(hours=24) <= key.expires_at <= timezone.now() + timedelta(hours=24)


def test_roll_action_refuses_a_grace_it_does_not_offer(admin_client, api_key):
    key, _ = api_key
    response = admin_client.post(
        CHANGELIST, {"action": "roll_keys", "_selected_action": [key.pk], "grace": "30d"}, follow=True
    )
    assert key.events.filter(action="rolled").count() == 0
    assert APIKey.objects.count() == 1
    assert response.status_code == 200


def test_the_list_shows_and_filters_rolling_keys(admin_client, api_key):
    key, _ = api_key
    new, _ = api_key_roll(api_key=key, grace=timedelta(hours=1))
    page = admin_client.get(CHANGELIST).content.decode()
    assert (page.count(">rolling<"), page.count(">active<")) == (1, 1)
    rolling = admin_client.get(CHANGELIST, {"status": "rolling"}).context["cl"].result_list
    active = admin_client.get(CHANGELIST, {"status": "active"}).context["cl"].result_list
    assert ([k.pk for k in rolling], [k.pk for k in active]) == ([key.pk], [new.pk])


def test_revoke_with_predecessors_action_revokes_the_rolled_key_too(admin_client, admin_user, api_key):
    key, old_secret = api_key
    new, _ = api_key_roll(api_key=key, grace=timedelta(days=7))
    plain = admin_client.post(CHANGELIST, {"action": "revoke_keys", "_selected_action": [new.pk]}, follow=True)
    assert any(key.public_id in str(m) and "Still working" in str(m) for m in plain.context["messages"])
    key.refresh_from_db()
    assert key.status == "rolling"
    response = admin_client.post(
        CHANGELIST, {"action": "revoke_keys_and_predecessors", "_selected_action": [new.pk]}, follow=True
    )
    assert "Revoked 1 key(s)." in [str(m) for m in response.context["messages"]]
    key.refresh_from_db()
    assert key.status == "revoked"
    event = key.events.get(action="revoked")
    assert (event.actor, event.source, event.details) == (admin_user, "admin", {"revoked_with": new.public_id})


def test_roll_action_reports_keys_that_cannot_be_rolled(admin_client, api_key):
    key, _ = api_key
    key.revoked_at = timezone.now()
    key.save()
    response = admin_client.post(
        CHANGELIST, {"action": "roll_keys", "_selected_action": [key.pk], "grace": "now"}, follow=True
    )
    assert any("only an active key can be rolled" in str(m) for m in response.context["messages"])
    assert APIKey.objects.count() == 1
    assert not APIKeyEvent.objects.filter(action="rolled").exists()


def test_create_a_restricted_limited_key_and_see_its_limit(admin_client, account):
    response = admin_client.post(
        ADD,
        {
            "account": account.pk,
            "name": "customer",
            "expires_at_0": "",
            "expires_at_1": "",
            "scopes": ["models:read", "generations:write"],
            "models": "rivya-image-1",
            "credit_limit": "50",
            "credit_limit_window": "day",
        },
    )
    assert response.status_code == 200, response.content
    key = APIKey.objects.get(name="customer")
    assert key.scopes == ["models:read", "generations:write"]
    assert key.allowed_models == ["rivya-image-1"]
    page = admin_client.get(change_url(key)).content.decode()
    assert "0 of 50 credits used per day (UTC)" in page
    assert "rivya-image-1" in page
    default = admin_client.post(ADD, {"account": account.pk, "name": "plain", "expires_at_0": "", "expires_at_1": ""})
    assert default.status_code == 200
    assert "keys:write" not in APIKey.objects.get(name="plain").scopes
    unknown = admin_client.post(
        ADD, {"account": account.pk, "name": "bad", "models": "nope", "credit_limit_window": "total"}
    )
    assert "Unknown model" in unknown.content.decode()
    assert not APIKey.objects.filter(name="bad").exists()
