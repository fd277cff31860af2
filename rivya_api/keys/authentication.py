"""``Authorization: Bearer rvya_sk_…`` authentication for DRF.

Outcomes, each a 401 in the error shape with ``WWW-Authenticate: Bearer``:

* no ``Authorization`` header: ``authenticate`` returns None and the
  ``HasAccount`` permission turns that into ``missing_api_key``;
* another scheme, an empty token or a token that is not a Rivya secret:
  ``invalid_api_key_format`` (answered without touching the database);
* a well-formed secret no key has: ``invalid_api_key``;
* a revoked key: ``api_key_revoked``; an expired one (including a rolled key
  after its grace period): ``api_key_expired``;
* an address that sent too many unknown or malformed keys in a short time:
  429 ``too_many_failed_authentications`` with ``Retry-After`` (``guessing``);
* a key whose account is disabled (``RIVYA_API["ACCOUNT_IS_ACTIVE"]``; by default
  a user with ``is_active = False``): ``account_disabled``. Saving the account
  drops its keys from the key cache, so this holds from the next request on.

The secret is hashed and looked up by hash (cached, see ``keystore``); the
stored and computed digests are compared with ``hmac.compare_digest``. The
status is checked against the clock on every request, cached or not.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.cache import caches
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from rivya_api.common.auth import ApiPrincipal
from rivya_api.conf import api_settings
from rivya_api.keys import guessing, keystore, onetrip
from rivya_api.keys.models import APIKey
from rivya_api.keys.services import api_key_touch
from rivya_api.keys.tokens import secret_hash, secret_is_well_formed

WWW_AUTHENTICATE = 'Bearer realm="api"'


class APIKeyAuthenticationFailed(AuthenticationFailed):
    """A 401 whose ``WWW-Authenticate`` also says ``error="invalid_token"`` (RFC 6750)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(detail=message, code=code)
        self.headers = {"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="invalid_token"'}


def _cache_reads(request: Any, key_hash: str) -> tuple[Any, Any]:
    """``(failed lookups of the address, the key's cache entry)`` in one cache round trip, each
    ``keystore.UNREAD`` where not read (so read on its own, as it handles a cache that is down).

    Both live in one cache by default (``RATE_LIMIT_CACHE_ALIAS`` = ``KEY_CACHE_ALIAS``): one
    ``get_many`` (a single MGET on Redis) instead of two GETs before every authenticated request.
    ``RIVYA_API["AUTH_CACHE_READS_BATCHED"] = False``: two reads. On Redis the same round trip
    also counts the request against the key's rate limit (``onetrip``).
    """
    unread = keystore.UNREAD
    if not api_settings.AUTH_CACHE_READS_BATCHED or api_settings.RATE_LIMIT_CACHE_ALIAS != api_settings.KEY_CACHE_ALIAS:
        return unread, unread
    entry, counter = keystore.cache_entry_name(key_hash), guessing.counter_name(request)
    # An entry the view asks for rides along (a chat turn's funds hint): no round trip of its own.
    extra = view_cache_read(request, key_hash) if entry is not None else None
    wanted = extra[0] if extra is not None else None
    counted = onetrip.reads_and_count(request, key_hash, [counter, entry, wanted])
    if counted is not None:
        failures, cached, value = counted
        if extra is not None:
            extra[1](value)
        return unread if counter is None else failures, unread if entry is None else cached
    if entry is None or counter is None:
        return unread, unread
    try:
        found = caches[api_settings.KEY_CACHE_ALIAS].get_many([name for name in (counter, entry, wanted) if name])
    except Exception:
        return unread, unread  # each read again on its own, and says the cache is down
    if extra is not None:
        extra[1](found.get(wanted))
    return found.get(counter), found.get(entry)


def view_cache_read(request: Any, key_hash: str) -> tuple[str, Callable[[Any], None]] | None:
    """The cache entry the request's view asks to have read with the key's (its ``auth_cache_read``,
    called with the request and the secret's hash): ``(its name, what takes its value)``, or None.
    The value given is None when absent, ``keystore.UNREAD`` when unreadable; not called on a cache error."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    asks = getattr(view, "auth_cache_read", None)
    return None if asks is None else asks(request, key_hash)


class APIKeyAuthentication(BaseAuthentication):
    """Authenticates a request by its API key; ``request.user`` is an ``ApiPrincipal``, ``request.auth`` the key."""

    keyword = "bearer"

    def now(self) -> datetime:
        """The clock statuses are checked against (a subclass may inject another)."""
        return timezone.now()

    def authenticate(self, request: Any) -> tuple[ApiPrincipal, APIKey] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            secret = self._secret_from_header(header)
        except APIKeyAuthenticationFailed:
            guessing.failed_lookups_check(request)  # an address past its limit gets the 429 first
            guessing.failed_lookup_record(request)
            raise
        key_hash = secret_hash(secret)
        failures, cached = _cache_reads(request, key_hash)
        if isinstance(cached, str) and cached == keystore.UNKNOWN:
            onetrip.mark_nobodys(request)  # no key has this hash: its rate-limit count is nobody's
        if failures is keystore.UNREAD:
            guessing.failed_lookups_check(request)
        else:
            guessing.failed_lookups_check(request, failures, read=False)
        key = keystore.key_lookup(key_hash, cached)
        if key is None or not hmac.compare_digest(key.key_hash, key_hash):
            onetrip.mark_nobodys(request)
            guessing.failed_lookup_record(request)
            raise APIKeyAuthenticationFailed("The API key is not valid.", code="invalid_api_key")
        now = self.now()
        status = key.status_at(now)
        if status == APIKey.Status.REVOKED:
            raise APIKeyAuthenticationFailed("This API key has been revoked.", code="api_key_revoked")
        if status == APIKey.Status.EXPIRED:
            message = "This API key has expired."
            if key.replaced_by_id is not None:
                message = "This API key was rolled and its grace period has ended; use its replacement."
            raise APIKeyAuthenticationFailed(message, code="api_key_expired")
        if not api_settings.ACCOUNT_IS_ACTIVE(key.account):
            raise APIKeyAuthenticationFailed("The account of this API key is disabled.", code="account_disabled")
        api_key_touch(api_key=key, now=now)
        return ApiPrincipal(account=key.account, api_key=key), key

    def _secret_from_header(self, header: bytes) -> str:
        try:
            scheme, _, token = header.decode("ascii").partition(" ")
        except UnicodeDecodeError:
            scheme, token = "", ""
        token = token.strip()
        if scheme.lower() != self.keyword or not secret_is_well_formed(token):
            raise APIKeyAuthenticationFailed(
                "Send the API key as 'Authorization: Bearer rvya_sk_…'.", code="invalid_api_key_format"
            )
        return token

    def authenticate_header(self, request: Any) -> str:
        return WWW_AUTHENTICATE
