"""A key whose account is disabled stops at once (issue 21, item 6): 401 ``account_disabled``,
including when the key was cached just before, and through a host's own hook."""

from __future__ import annotations

import pytest

from rivya_api.keys.services import api_keys_invalidate
from rivya_billing.services import credits_grant

pytestmark = pytest.mark.django_db


def set_active(account, active: bool) -> None:
    """Disable or enable the account the host's way: a user's ``is_active`` by default; a suspended
    organisation under tests.orghost, whose ACCOUNT_IS_ACTIVE hook reads that."""
    field = "suspended" if hasattr(account, "suspended") else "is_active"
    setattr(account, field, not active if field == "suspended" else active)
    account.save(update_fields=[field])


def refused(response) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "account_disabled"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("shared_cache_only", [True, False])
def test_a_deactivated_user_cannot_read_or_spend(api_client, account, rivya_settings, shared_cache_only):
    # With SHARED_ONLY off, this process's cache holds the key: saving the account must drop it.
    rivya_settings("RIVYA_API", KEY_CACHE_SHARED_ONLY=shared_cache_only)
    credits_grant(account=account, amount=10, reference="grant")
    assert api_client.get("/api/v1/credits").status_code == 200
    assert api_client.get("/api/v1/credits").status_code == 200
    set_active(account, False)
    refused(api_client.get("/api/v1/credits"))
    body = {"model": "rivya-image-1", "input": {"prompt": "x"}}
    refused(api_client.post("/api/v1/generations", body, format="json"))
    chat = {"model": "rivya-chat-1", "messages": [{"role": "user", "content": "hi"}]}
    refused(api_client.post("/api/v1/chat/completions", chat, format="json"))
    set_active(account, True)
    assert api_client.get("/api/v1/credits").status_code == 200


SUSPENDED: set[int] = set()


def suspended_hook(account) -> bool:
    return account.pk not in SUSPENDED


def test_a_hosts_hook_decides_and_invalidation_makes_it_immediate(api_client, account, rivya_settings):
    rivya_settings("RIVYA_API", ACCOUNT_IS_ACTIVE=f"{__name__}.suspended_hook", KEY_CACHE_SHARED_ONLY=False)
    assert api_client.get("/api/v1/credits").status_code == 200
    SUSPENDED.add(account.pk)
    try:
        assert api_keys_invalidate(account=account) == 1
        refused(api_client.get("/api/v1/credits"))
    finally:
        SUSPENDED.discard(account.pk)
