"""Per-key rate limit: a fixed-window counter in Django's cache (Redis when configured).

``RIVYA_API["RATE_LIMIT"]`` (env ``RIVYA_API_RATE_LIMIT``, default
``1200/min``) is read per request. Each request costs one atomic increment:
on Redis a single pipelined ``INCR`` + ``EXPIRE`` round trip, elsewhere
``add`` + ``incr``. The counter key names the key (its public id) and the window start,
so windows never need resetting and expire on their own. A fixed window lets
a client burst up to twice the limit across a boundary; that is the price of
one round trip and exact, simple headers.

If the cache is unreachable the throttle lets the request through (and logs):
a rate limit is protection, not a reason to take the API down.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from rivya_api.common.ratelimit import RateLimitState, rate_limit_state_set
from rivya_api.conf import api_settings
from rivya_api.keys.models import APIKey

logger = logging.getLogger(__name__)

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*")


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"1200/min"`` -> ``(1200, 60)``; ``"50/10s"`` -> ``(50, 10)``; ``"off"`` or empty -> None."""
    if rate is None or rate.strip().lower() in ("", "off", "none"):
        return None
    match = _RATE.fullmatch(rate.lower())
    if not match or match.group(3) not in _UNITS or int(match.group(1)) < 1:
        raise ValueError(f"Invalid RIVYA_API RATE_LIMIT {rate!r}: expected e.g. '1200/min' or '50/10s'.")
    window = int(match.group(2) or 1) * _UNITS[match.group(3)]
    return int(match.group(1)), window


def increment(name: str, ttl: int) -> int:
    """Add one to the counter ``name`` (created with ``ttl`` seconds to live); returns the new count."""
    cache = caches[api_settings.RATE_LIMIT_CACHE_ALIAS]
    if isinstance(cache, RedisCache) and hasattr(cache, "_cache"):
        # One round trip; Django stores ints raw in Redis, so INCR works on its keys.
        key = cache.make_and_validate_key(name)
        pipe = cache._cache.get_client(key, write=True).pipeline()
        pipe.incr(key)
        pipe.expire(key, ttl)
        count, _ = pipe.execute()
        return int(count)
    for _ in range(3):
        cache.add(name, 0, ttl)
        try:
            return int(cache.incr(name))
        except ValueError:  # expired between add and incr
            continue
    raise RuntimeError("could not increment the rate-limit counter")


class APIKeyRateThrottle(BaseThrottle):
    """Counts requests per API key per window; records the state for the response headers."""

    def timer(self) -> float:
        return time.time()

    def allow_request(self, request: Any, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, APIKey):
            return True
        rate = parse_rate(api_settings.RATE_LIMIT)
        if rate is None:
            return True
        limit, window = rate
        now = self.timer()
        window_start = int(now // window) * window
        reset = window_start + window - now
        try:
            count = increment(f"rivya_api:ratelimit:{key.public_id}:{window}:{window_start}", window + 1)
        except Exception:
            logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)
            return True
        rate_limit_state_set(request, RateLimitState(limit=limit, remaining=max(0, limit - count), reset_seconds=reset))
        self._wait = reset
        return count <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
