"""Reads of the keys resource."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from rivya_api.keys import keystore
from rivya_api.keys.models import APIKey, APIKeyEvent
from rivya_api.keys.tokens import secret_hash, secret_is_well_formed


def api_key_list(*, account: Any) -> QuerySet[APIKey]:
    """The account's keys, newest first (revoked and expired ones included)."""
    return APIKey.objects.filter(account=account).order_by("-created_at", "-pk")


def api_key_get(*, account: Any, public_id: str) -> APIKey | None:
    """One of the account's keys by public id; another account's key is None, like a missing one."""
    return APIKey.objects.filter(account=account, public_id=public_id).first()


def api_key_for_secret(*, secret: str) -> APIKey | None:
    """The key a presented secret belongs to (any status), through the shared lookup cache."""
    if not secret_is_well_formed(secret):
        return None
    return keystore.key_lookup(secret_hash(secret))


def api_key_event_list(*, api_key: APIKey) -> QuerySet[APIKeyEvent]:
    """The key's audit trail, newest first."""
    return APIKeyEvent.objects.filter(api_key=api_key).select_related("actor").order_by("-created_at", "-pk")
