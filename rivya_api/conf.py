"""Settings for rivya_api, read from the ``RIVYA_API`` dict.

Read ``api_settings.X`` inside functions, never at import time, so that
``override_settings`` and the ``rivya_settings`` test fixture take effect.
"""

from __future__ import annotations

from typing import Any

from rivya_billing.conf import AppSettings

DEFAULTS: dict[str, Any] = {
    # Absolute origin for URLs built outside a request (webhook payloads, emails).
    "PUBLIC_BASE_URL": "",
    # Callable(user) -> account: the account a logged-in Studio user acts as.
    "ACCOUNT_FOR_USER": "rivya_api.accounts.user_is_account",
    # Largest request body accepted under /api/v1/ before it is read (413 above).
    "MAX_REQUEST_BYTES": 64 * 1024 * 1024,
    # Every authenticated API view uses these (see rivya_api.common.views.AccountScopedMixin).
    "AUTHENTICATION_CLASSES": ["rivya_api.keys.authentication.APIKeyAuthentication"],
    "THROTTLE_CLASSES": ["rivya_api.keys.throttling.APIKeyRateThrottle"],
    # Requests per key and window, "<n>/<unit>" with unit s, min, hour or day
    # (e.g. "1200/min", "50/10s"); "off" disables. From RIVYA_API_RATE_LIMIT.
    "RATE_LIMIT": "1200/min",
    # Cache alias holding the per-key request counters (Redis when REDIS_URL is set).
    "RATE_LIMIT_CACHE_ALIAS": "default",
    # How long a key lookup stays cached (0: every request reads the row). See rivya_api.keys.keystore.
    "KEY_CACHE_SECONDS": 60,
    "KEY_CACHE_ALIAS": "default",
    # Only cache key lookups in a cache every process shares (not LocMemCache), so a
    # revocation reaches all processes at once.
    "KEY_CACHE_SHARED_ONLY": True,
    # last_used_at is written at most once per this many seconds per key.
    "KEY_LAST_USED_INTERVAL": 60,
    # Chat: a turn still in progress after this long is stale: it no longer blocks its
    # session, and the sweeper fails it and releases its hold.
    "CHAT_TURN_TIMEOUT_SECONDS": 900,
    # Chat streams: seconds of silence from the model before a keep-alive comment line.
    "CHAT_KEEPALIVE_SECONDS": 10,
    # Chat streams: a turn's events stay available for resume this long after it ends.
    "CHAT_STREAM_RETENTION_SECONDS": 300,
    # Chat streams: Redis URL for the event buffer and cross-process cancel ("" = this process only).
    "CHAT_STREAM_REDIS_URL": "",
    "PAGE_SIZE": 20,
    "MAX_PAGE_SIZE": 100,
}

IMPORT_STRINGS = ("ACCOUNT_FOR_USER", "AUTHENTICATION_CLASSES", "THROTTLE_CLASSES")

api_settings = AppSettings("RIVYA_API", DEFAULTS, import_strings=IMPORT_STRINGS)
