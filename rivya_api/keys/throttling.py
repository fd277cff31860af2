"""Per-key rate limit: a fixed-window counter in Django's cache (Redis when configured).

``RIVYA_API["RATE_LIMIT"]`` (env ``RIVYA_API_RATE_LIMIT``, default
``1200/min``) is read per request. Each request costs one atomic increment:
on Redis a single pipelined ``INCR`` + ``EXPIRE`` round trip, elsewhere
``add`` + ``incr``; where the key's cache entry lives in the same Redis, that round trip is
authentication's own (``onetrip``). The counter key names the key (its public id, or on that
path its secret's hash) and the window start,
so windows never need resetting and expire on their own. A fixed window lets
a client burst up to twice the limit across a boundary; that is the price of
one round trip and exact, simple headers.

If the cache is unreachable the throttle lets the request through (and logs):
a rate limit is protection, not a reason to take the API down.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from rivya_api.common.ratelimit import RateLimitState, rate_limit_state_set
from rivya_api.conf import api_settings
from rivya_api.keys import onetrip
from rivya_api.keys.models import APIKey
from rivya_api.keys.rates import parse_rate

logger = logging.getLogger(__name__)


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
    """Counts requests per API key per window; records the state for the response headers.

    Where authentication already counted the request in its cache round trip (``onetrip``), takes
    that count (and the time it was taken) instead of counting again.
    """

    takes_counted = True  # onetrip counts the request for this throttle

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
        counted = onetrip.take(request, key, window)
        if counted is not None:
            now, count = counted.now, counted.count
        else:
            now = self.timer()
            try:
                count = increment(onetrip.counter_name(key, window, int(now // window) * window), window + 1)
            except Exception:
                logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)
                return True
        reset = int(now // window) * window + window - now
        rate_limit_state_set(request, RateLimitState(limit=limit, remaining=max(0, limit - count), reset_seconds=reset))
        self._wait = reset
        return count <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
