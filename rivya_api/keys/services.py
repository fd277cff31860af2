"""Writes of the keys resource: create, roll, revoke, and the cheap "last used" touch.

Admin, settings pages, management commands and tests call these; nothing else
writes ``APIKey`` rows. Each state change writes an ``APIKeyEvent`` in the
same transaction. A secret is returned once, by ``api_key_create`` and
``api_key_roll``, and never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import caches
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from rivya_api.catalog.selectors import catalog_models
from rivya_api.conf import api_settings
from rivya_api.keys import keystore
from rivya_api.keys.exceptions import APIKeyError, APIKeyGraceError, APIKeyStateError
from rivya_api.keys.models import APIKey, APIKeyEvent
from rivya_api.keys.scopes import InsufficientScopeError, default_scopes, scopes_normalize
from rivya_api.keys.selectors import api_key_predecessors_working
from rivya_api.keys.tokens import secret_display_parts, secret_generate, secret_hash
from rivya_billing import services as billing
from rivya_billing.exceptions import SpendLimitError

# What a user may pick when rolling a key, like Stripe's roll dialog.
ROLL_GRACE_CHOICES: dict[str, timedelta] = {
    "now": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
MAX_ROLL_GRACE = timedelta(days=7)
NAME_MAX_LENGTH = 100


def _audit(
    *,
    api_key: APIKey,
    action: str,
    actor: Any,
    ip: str | None,
    source: str,
    now: datetime,
    details: dict[str, Any] | None = None,
) -> APIKeyEvent:
    return APIKeyEvent.objects.create(
        api_key=api_key,
        account_id=api_key.account_id,
        action=action,
        actor=actor if getattr(actor, "pk", None) is not None else None,
        source=source[:32],
        ip=ip or None,
        created_at=now,
        details=details or {},
    )


def _key_insert(
    *,
    account_id: Any,
    name: str,
    created_by: Any,
    expires_at: datetime | None,
    now: datetime,
    scopes: list[str] | None = None,
    allowed_models: list[str] | None = None,
    spend_limit_id: int | None = None,
) -> tuple[APIKey, str]:
    secret = secret_generate()
    prefix, last4 = secret_display_parts(secret)
    key = APIKey.objects.create(
        account_id=account_id,
        name=name,
        prefix=prefix,
        last4=last4,
        key_hash=secret_hash(secret),
        created_at=now,
        created_by=created_by if getattr(created_by, "pk", None) is not None else None,
        expires_at=expires_at,
        scopes=default_scopes() if scopes is None else scopes,
        allowed_models=allowed_models,
        spend_limit_id=spend_limit_id,
    )
    return key, secret


@transaction.atomic
def api_key_create(
    *,
    account: Any,
    name: str,
    created_by: Any = None,
    expires_at: datetime | None = None,
    ip: str | None = None,
    source: str = "",
    now: datetime | None = None,
    scopes: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    credit_limit: CreditLimit | None = None,
    granted_by: APIKey | None = None,
) -> tuple[APIKey, str]:
    """Issue a new key for ``account``; returns ``(key, secret)``.

    The secret is returned here only: the row keeps its hash, prefix and last
    four characters. ``scopes`` defaults to every scope but ``keys:*``;
    ``models`` (None: every model) is the allow-list; ``credit_limit`` sets a
    spend limit the key's reservations count against. A key created through the
    API names its creator in ``granted_by``: the new key may not have a scope or
    a model the creator lacks (``InsufficientScopeError``). Writes the key, its
    limit and a ``created`` audit event atomically.
    """
    now = now or timezone.now()
    name = _clean_name(name)
    if expires_at is not None and expires_at <= now:
        raise APIKeyError("expires_at must be in the future.", param="expires_at")
    scope_list = scopes_normalize(scopes)
    model_list = _models_normalize(models)
    if granted_by is not None:
        _check_within(granted_by, scopes=scope_list, models=model_list)
    key, secret = _key_insert(
        account_id=account.pk,
        name=name,
        created_by=created_by,
        expires_at=expires_at,
        now=now,
        scopes=scope_list,
        allowed_models=model_list,
    )
    details: dict[str, Any] = {"scopes": scope_list, "models": model_list}
    if granted_by is not None:
        details["granted_by"] = granted_by.public_id
    if credit_limit is not None:
        _limit_set(key, credit_limit, now=now)
        details["credit_limit"] = {"credits": credit_limit.credits, "window": credit_limit.window}
    _audit(
        api_key=key, action=APIKeyEvent.Action.CREATED, actor=created_by, ip=ip, source=source, now=now, details=details
    )
    return key, secret


@dataclass(frozen=True)
class CreditLimit:
    """A key's credit limit as asked for: ``credits`` per ``window`` (``total``, ``day`` or ``month``, UTC)."""

    credits: int
    window: str = "total"


UNSET: Any = object()


def _clean_name(name: str | None) -> str:
    name = (name or "").strip()
    if len(name) > NAME_MAX_LENGTH:
        raise APIKeyError(f"A key name has at most {NAME_MAX_LENGTH} characters.", param="name")
    return name


def _models_normalize(models: Iterable[str] | None) -> list[str] | None:
    """The allow-list as stored: None (every model) or the distinct known model ids, in the given order."""
    if models is None:
        return None
    known = {model.id for model in catalog_models()}
    cleaned: list[str] = []
    for index, model in enumerate(models):
        if not isinstance(model, str) or model not in known:
            raise APIKeyError(
                f"Unknown model {str(model)[:100]!r}; GET /api/v1/models lists the models.", param=f"models[{index}]"
            )
        if model not in cleaned:
            cleaned.append(model)
    return cleaned


def _check_within(granted_by: APIKey, *, scopes: list[str] | None, models: list[str] | None) -> None:
    """Refuse to give a key a scope or a model its creator (``granted_by``) does not have."""
    for scope in scopes or ():
        if scope not in (granted_by.scopes or ()):
            raise InsufficientScopeError(
                f"This API key lacks the {scope} scope, so it cannot give it to another key.",
                scope=scope,
                param="scopes",
            )
    if granted_by.allowed_models is not None:
        beyond = ["every model"] if models is None else [m for m in models if m not in granted_by.allowed_models]
        if beyond:
            raise InsufficientScopeError(
                f"This API key may only use {', '.join(granted_by.allowed_models) or 'no model'}, so it cannot "
                f"give another key {beyond[0]}; send models within its own.",
                scope="models",
                param="models",
            )


def _limit_set(key: APIKey, credit_limit: CreditLimit, *, now: datetime) -> None:
    """Create or change the key's spend limit (a rolled key's replacement shares its predecessor's)."""
    existing = billing.spend_limit_get(pk=key.spend_limit_id) if key.spend_limit_id else None
    owner_ref = existing.owner_ref if existing is not None else f"api_key:{key.public_id}"
    try:
        limit = billing.spend_limit_set(
            owner_ref=owner_ref, credits=credit_limit.credits, window=credit_limit.window, now=now
        )
    except SpendLimitError as error:
        raise APIKeyError(str(error), param=f"credit_limit.{error.param}") from None
    if key.spend_limit_id != limit.pk:
        key.spend_limit_id = limit.pk
        APIKey.objects.filter(pk=key.pk).update(spend_limit_id=limit.pk)


@transaction.atomic
def api_key_update(
    *,
    api_key: APIKey,
    name: str | None = UNSET,
    models: Iterable[str] | None = UNSET,
    credit_limit: CreditLimit | None = UNSET,
    granted_by: APIKey | None = None,
    actor: Any = None,
    ip: str | None = None,
    source: str = "",
    now: datetime | None = None,
) -> APIKey:
    """Change a key's ``name``, model allow-list or credit limit (``None``: remove it); omitted ones stay.

    With ``granted_by`` (the key making the change through the API), the allow-list
    may not reach beyond that key's (``InsufficientScopeError``). Locks the key row,
    drops cached copies before the change (``keystore``), writes an ``updated`` audit
    event with what changed; atomic.
    """
    now = now or timezone.now()
    key = APIKey.objects.select_for_update().get(pk=api_key.pk)
    changed: dict[str, Any] = {}
    if name is not UNSET:
        key.name = changed["name"] = _clean_name(name)
    if models is not UNSET:
        model_list = _models_normalize(models)
        if granted_by is not None:
            _check_within(granted_by, scopes=None, models=model_list)
        key.allowed_models = changed["models"] = model_list
    if credit_limit is not UNSET:
        if credit_limit is None:
            key.spend_limit_id = None
            changed["credit_limit"] = None
        else:
            _limit_set(key, credit_limit, now=now)
            changed["credit_limit"] = {"credits": credit_limit.credits, "window": credit_limit.window}
    if changed:
        keystore.key_invalidate(key.key_hash)
        key.save(update_fields=["name", "allowed_models", "spend_limit_id"])
        _audit(
            api_key=key, action=APIKeyEvent.Action.UPDATED, actor=actor, ip=ip, source=source, now=now, details=changed
        )
    return key


@transaction.atomic
def api_key_roll(
    *,
    api_key: APIKey,
    grace: timedelta = timedelta(0),
    actor: Any = None,
    ip: str | None = None,
    source: str = "",
    now: datetime | None = None,
) -> tuple[APIKey, str]:
    """Replace an active key; the old one keeps working for ``grace`` (0 to 7 days).

    Returns ``(new_key, secret)``. The replacement has the old key's name,
    account and expiry; the old key's ``expires_at`` becomes ``now + grace``
    (or stays earlier) and its ``replaced_by`` names the new key. The old row
    is locked, so two concurrent rolls of one key cannot both succeed; cached
    copies of the old key are invalidated before it changes (see ``keystore``).
    """
    if grace < timedelta(0) or grace > MAX_ROLL_GRACE:
        raise APIKeyGraceError("The grace period must be between 0 and 7 days.")
    now = now or timezone.now()
    old = APIKey.objects.select_for_update().get(pk=api_key.pk)
    _check_rollable(old, now=now)
    keystore.key_invalidate(old.key_hash)
    new, secret = _key_insert(
        account_id=old.account_id,
        name=old.name,
        created_by=actor,
        expires_at=old.expires_at,
        now=now,
        scopes=old.scopes,
        allowed_models=old.allowed_models,
        spend_limit_id=old.spend_limit_id,  # the same budget: rolling a secret is no way around a limit
    )
    deadline = now + grace
    old.expires_at = deadline if old.expires_at is None else min(old.expires_at, deadline)
    old.replaced_by = new
    old.save(update_fields=["expires_at", "replaced_by"])
    _roll_audit(old=old, new=new, grace=grace, actor=actor, ip=ip, source=source, now=now)
    api_key.expires_at, api_key.replaced_by = old.expires_at, new
    return new, secret


def _check_rollable(key: APIKey, *, now: datetime) -> None:
    """Only an active key can be rolled; a rolled one is replaced through its successor."""
    status = key.status_at(now)
    if status == APIKey.Status.ROLLING:
        raise APIKeyStateError("This key has already been rolled; roll its replacement instead.")
    if status != APIKey.Status.ACTIVE:
        raise APIKeyStateError(f"This key is {status}; only an active key can be rolled.")


def _roll_audit(
    *, old: APIKey, new: APIKey, grace: timedelta, actor: Any, ip: str | None, source: str, now: datetime
) -> None:
    """The roll's two audit events, each pointing at the other key: ``rolled`` on the old, ``created`` on the new."""
    _audit(
        api_key=old,
        action=APIKeyEvent.Action.ROLLED,
        actor=actor,
        ip=ip,
        source=source,
        now=now,
        details={
            "replaced_by": new.public_id,
            "grace_seconds": int(grace.total_seconds()),
            "expires_at": old.expires_at.isoformat(),
        },
    )
    _audit(
        api_key=new,
        action=APIKeyEvent.Action.CREATED,
        actor=actor,
        ip=ip,
        source=source,
        now=now,
        details={"replaces": old.public_id},
    )


@transaction.atomic
def api_key_revoke(
    *,
    api_key: APIKey,
    actor: Any = None,
    ip: str | None = None,
    source: str = "",
    now: datetime | None = None,
    predecessors: bool = False,
) -> APIKey:
    """Revoke a key at once, in every process. Revoking a revoked key changes nothing.

    With ``predecessors``, also revoke every key this one replaced (by rolling,
    transitively) that still works in its grace period: a leaked key's older
    secret must not keep working for days after the leak is dealt with. The
    cached copies are invalidated before the rows change (see ``keystore``);
    the row updates and their ``revoked`` audit events commit together.
    """
    now = now or timezone.now()
    chain = [older.pk for older in api_key_predecessors_working(api_key=api_key, now=now)] if predecessors else []
    # Every row at once, in primary-key order, so two revokes of one chain cannot deadlock.
    rows = APIKey.objects.select_for_update().filter(pk__in=[api_key.pk, *chain]).order_by("pk")
    locked = {row.pk: row for row in rows}
    key = locked[api_key.pk]
    for pk in chain:
        older = locked[pk]
        if older.status_at(now) == APIKey.Status.ROLLING:  # still working now that it is locked
            _revoke_locked(older, actor=actor, ip=ip, source=source, now=now, details={"revoked_with": key.public_id})
    if key.revoked_at is None:
        _revoke_locked(key, actor=actor, ip=ip, source=source, now=now)
    api_key.revoked_at = key.revoked_at
    return key


def _revoke_locked(
    key: APIKey, *, actor: Any, ip: str | None, source: str, now: datetime, details: dict[str, Any] | None = None
) -> None:
    keystore.key_invalidate(key.key_hash)
    key.revoked_at = now
    key.save(update_fields=["revoked_at"])
    _audit(api_key=key, action=APIKeyEvent.Action.REVOKED, actor=actor, ip=ip, source=source, now=now, details=details)


# Per process: when this process last asked the cache to elect a writer, per key public id.
_touched: dict[str, datetime] = {}


def api_key_touch(*, api_key: APIKey, now: datetime | None = None) -> bool:
    """Record that the key was used; writes at most once per ``KEY_LAST_USED_INTERVAL`` per key.

    A cache ``add`` (atomic set-if-absent) elects one request per interval to
    write, so the hot path is not a database write; each process asks the cache
    at most once per interval and key (the write may then lag by up to two
    intervals, which a "last used" hint can afford); the
    conditional UPDATE keeps the bound even where the cache is per process.
    Returns whether this call wrote. Not atomic on purpose: it is a hint.
    """
    interval = int(api_settings.KEY_LAST_USED_INTERVAL)
    now = now or timezone.now()
    # This process already took part in this interval's election: skip the cache round trip.
    last = _touched.get(api_key.public_id)
    if last is not None and timedelta(0) <= now - last < timedelta(seconds=interval):
        return False
    if len(_touched) > 10_000:
        _touched.clear()
    _touched[api_key.public_id] = now
    try:
        elected = caches[api_settings.KEY_CACHE_ALIAS].add(f"rivya_api:apikey-used:{api_key.public_id}", 1, interval)
    except Exception:
        elected = True  # cache down: fall back on the conditional UPDATE's own bound
    if not elected:
        return False
    threshold = now - timedelta(seconds=interval)
    updated = (
        APIKey.objects.filter(pk=api_key.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold))
        .update(last_used_at=now)
    )
    if updated:
        api_key.last_used_at = now
    return bool(updated)


def api_keys_invalidate(*, account: Any) -> int:
    """Drop every key of ``account`` from the key cache, so the next request reads the account again.

    Called when an account row is saved (a user deactivated, see ``rivya_api.keys.signals``)
    and by hosts whose ``ACCOUNT_IS_ACTIVE`` reads something else. Returns how many keys.
    """
    hashes = list(APIKey.objects.filter(account=account).values_list("key_hash", flat=True))
    for key_hash in hashes:
        keystore.key_invalidate(key_hash)
    return len(hashes)
