"""Cached lookup of keys by secret hash, shared by every process through Django's cache.

Authenticating a request needs the key row and its account. Those are cached
under the secret's hash for ``KEY_CACHE_SECONDS``, so a busy key costs no
database query. Correctness across processes rests on two rules:

* Readers only ever *add* (set-if-absent) an entry.
* Writers (``api_key_roll``, ``api_key_revoke``) first *set* a ``STALE``
  marker, before they change the row. While the marker lives, every reader
  goes to the database and none may repopulate the entry (``add`` fails), so
  a reader that loaded the row just before the change cannot put it back.
  The marker lives as long as an entry would; by the time it expires the
  change has long committed.

Time-based expiry needs no invalidation: the status is checked against the
clock on every request, cached or not. A process-local cache (LocMemCache,
the embedded default) cannot carry invalidations to other processes, so with
``KEY_CACHE_SHARED_ONLY`` (the default) such a cache is not used for keys and
every request reads the row (one indexed query). Unknown hashes are cached
too (``UNKNOWN``), so a flood of made-up keys cannot hammer the database;
that is safe because a hash is only ever presented before its key exists by
someone who guessed 256 random bits.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from rivya_api.conf import api_settings
from rivya_api.keys import fastpath
from rivya_api.keys.models import APIKey

logger = logging.getLogger(__name__)

STALE = "stale"
UNKNOWN = "unknown"


def _cache_key(key_hash: str) -> str:
    return f"rivya_api:apikey:v1:{key_hash}"


def key_cache() -> BaseCache | None:
    """The cache for key lookups, or None when lookups must go to the database."""
    if not api_settings.KEY_CACHE_SECONDS:
        return None
    cache = caches[api_settings.KEY_CACHE_ALIAS]
    if api_settings.KEY_CACHE_SHARED_ONLY and isinstance(cache, (LocMemCache, DummyCache)):
        return None
    return cache


def _load(key_hash: str) -> APIKey | None:
    if api_settings.KEY_LOOKUP_COMPILED:
        return fastpath.key_load(key_hash)
    try:
        return APIKey.objects.select_related("account").get(key_hash=key_hash)
    except APIKey.DoesNotExist:
        return None


UNREAD: Any = object()  # ``key_lookup``'s ``cached``: not read yet


def cache_entry_name(key_hash: str) -> str | None:
    """The name of ``key_hash``'s entry in ``key_cache()``, or None when lookups are not cached."""
    return _cache_key(key_hash) if key_cache() is not None else None


def key_lookup(key_hash: str, cached: Any = UNREAD) -> APIKey | None:
    """The key whose secret hashes to ``key_hash`` (with its account loaded), or None.

    ``cached``: the entry as the caller already read it from ``key_cache()`` (None when absent),
    so a caller that batches its cache reads (``rivya_api.keys.authentication``) saves one.
    """
    cache = key_cache()
    if cache is None:
        return _load(key_hash)
    name = _cache_key(key_hash)
    if cached is UNREAD:
        try:
            cached = cache.get(name)
        except Exception:
            logger.warning("API key cache unavailable; reading the database", exc_info=True)
            return _load(key_hash)
    if isinstance(cached, APIKey):
        return cached
    if cached == UNKNOWN:
        return None
    key = _load(key_hash)
    if cached is None:  # no STALE marker: this reader may fill the entry
        try:
            cache.add(name, key if key is not None else UNKNOWN, api_settings.KEY_CACHE_SECONDS)
        except Exception:
            logger.warning("API key cache unavailable; not caching", exc_info=True)
    return key


def key_invalidate(key_hash: str) -> None:
    """Stop every process from trusting a cached copy of this key (call before changing it)."""
    cache = key_cache()
    if cache is None:
        return
    try:
        cache.set(_cache_key(key_hash), STALE, api_settings.KEY_CACHE_SECONDS)
    except Exception:
        # Readers cannot reach the cache either while it is down; entries written
        # before the outage still expire within KEY_CACHE_SECONDS.
        logger.exception("Could not invalidate a cached API key")
