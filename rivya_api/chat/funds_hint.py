"""A chat turn's credits pre-check without its database round trip, from a hint in Redis (a fast path).

``chat_turn_prepare`` reads the wallet's available credits (one SELECT) before the model is called,
so that a turn that plainly cannot pay is refused before it costs an upstream request. The read is
advisory: the turn's commit, beside the model's request, takes the hold and refuses with the same
402 (and writes nothing) when the wallet cannot pay. So the read can come from a hint:

* a turn's batched finish (``pg_finish.finish_batched``) reads the wallet's available in the same
  query (a statement before its COMMIT, under the wallet's lock) and sets it under the API key's
  secret hash for ``HINT_SECONDS``;
* authentication's cache round trip (the key entry's MGET, ``keys.authentication._cache_reads``,
  on Redis also the rate-limit count, ``keys.onetrip``) reads that entry too, for a view that asks
  (its ``auth_cache_read``: ``POST /chat/completions``), and leaves it on the request;
* ``chat_turn_prepare`` skips its SELECT when the hint covers the turn's price. A hint that is
  missing, unreadable or too low: the SELECT, as the plain path (a top-up may have come since: a
  turn is never refused on the hint). A hint too high (spent elsewhere since): the commit refuses,
  the same 402 ``insufficient_credits`` with the same figures, nothing held or charged; only the
  model's request was sent for nothing; that refusal sets the hint to the wallet's available
  (``chat_turn_commit``), so the key's next turn reads the wallet again.

A key with a spend limit takes the plain path: its commit checks the limit before the wallet, so a
turn that the SELECT would have refused for want of credits could be refused for the limit instead
(another code, and a ``key.credit_limit_reached`` event). Only PostgreSQL with the key cache on
Redis (where the finish batch runs and the MGET is made); a Redis error is a missing hint, never a
failed turn. ``RIVYA_API["CHAT_FUNDS_HINT"] = False`` switches it off;
``tests/rivya_api/chat/test_funds_hint.py`` answers the same turns with it on and off.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection

from rivya_api.conf import api_settings

logger = logging.getLogger(__name__)

# How long a hint is trusted: the longest a turn's model request can be sent for a wallet that was
# spent (by another key, Studio or a generation) after this key's last turn.
HINT_SECONDS = 30
ATTRIBUTE = "rivya_funds_hint"


def enabled() -> bool:
    """Whether hints are read and written: the switch, PostgreSQL, the key cache on Redis."""
    if not api_settings.CHAT_FUNDS_HINT or connection.vendor != "postgresql":
        return False
    return isinstance(caches[api_settings.KEY_CACHE_ALIAS], RedisCache)


def name(key_hash: str) -> str:
    """The hint's cache entry, named by the secret's hash (known before the key is looked up)."""
    return f"rivya_api:funds:h:{key_hash}"


def auth_cache_read(request: Any, key_hash: str) -> tuple[str, Any] | None:
    """A view's ``auth_cache_read`` (``keys.authentication.view_cache_read``): the hint's entry and
    what keeps its value on the request; None when hints are off."""
    if not enabled():
        return None
    return name(key_hash), lambda value: keep(request, value)


def keep(request: Any, value: Any) -> None:
    """Leave the hint as read (an int, or None: absent or unreadable) on the request."""
    _django_request(request).__dict__[ATTRIBUTE] = value if type(value) is int else None


def for_turn(request: Any) -> tuple[int | None, str | None]:
    """``(the hint read for this request, the entry its turn's finish sets)``; ``(None, None)`` when
    authentication did not read it (off, or no key cache) or for a key with a spend limit (see above).
    """
    read = _django_request(request).__dict__
    key = getattr(request.user, "api_key", None)
    if ATTRIBUTE not in read or key is None or key.spend_limit_id is not None:
        return None, None
    return read[ATTRIBUTE], name(key.key_hash)


def covers(hint: int | None, credits: int) -> bool:
    """Whether the hint says the wallet can pay ``credits`` (else the pre-check reads the wallet)."""
    return hint is not None and hint >= credits


def remember(entry: str | None, available: int | None) -> None:
    """Set the hint (the wallet's available as the turn's finish left it); a Redis error is logged."""
    if entry is None or available is None:
        return
    try:
        caches[api_settings.KEY_CACHE_ALIAS].set(entry, int(available), HINT_SECONDS)
    except Exception:
        logger.warning("Could not set a chat funds hint; the next turn reads the wallet", exc_info=True)


def _django_request(request: Any) -> Any:
    return getattr(request, "_request", request)  # DRF's Request wraps Django's
