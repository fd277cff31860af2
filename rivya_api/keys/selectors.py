"""Reads of the keys resource."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from rivya_api.keys import keystore
from rivya_api.keys.models import APIKey, APIKeyEvent
from rivya_api.keys.tokens import secret_hash, secret_is_well_formed
from rivya_billing import services as billing


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


def api_key_event_list_for_account(*, account: Any) -> QuerySet[APIKeyEvent]:
    """Every audited key change of the account (the settings page's activity log), newest first."""
    return APIKeyEvent.objects.filter(account=account).select_related("actor", "api_key").order_by("-created_at", "-pk")


def api_key_predecessors_working(*, api_key: APIKey, now: datetime | None = None) -> list[APIKey]:
    """The keys ``api_key`` replaced by rolling that still work (``rolling``), its predecessor first.

    Follows the roll chain back (each key names its replacement), so a key rolled
    twice within the grace periods has two.
    """
    now = now or timezone.now()
    found: list[APIKey] = []
    current = api_key
    for _ in range(100):  # as long as the rolls within one grace period; bounded anyway
        older = APIKey.objects.filter(replaced_by=current).first()
        if older is None:
            break
        if older.status_at(now) == APIKey.Status.ROLLING:
            found.append(older)
        current = older
    return found


def api_key_credit_limits(keys: Iterable[APIKey], *, now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """``{spend_limit_id: {credits, window, used, resets_at}}`` of the keys' limits (one query), as shown now."""
    ids = {key.spend_limit_id for key in keys if key.spend_limit_id is not None}
    found: dict[int, dict[str, Any]] = {}
    for limit in billing.spend_limits_get(pks=ids):
        used, _, resets_at = billing.spend_limit_usage(limit, now=now)
        found[limit.pk] = {"credits": limit.credits, "window": limit.window, "used": used, "resets_at": resets_at}
    return found
