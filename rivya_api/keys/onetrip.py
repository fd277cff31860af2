"""A key's cache reads and its rate-limit count in one Redis round trip (a fast path).

An authenticated, rate-limited request made two round trips before its view: authentication's
MGET (the address's failed-lookup counter, the key's cache entry) and then the throttle's
INCR + EXPIRE of a counter named by the key's public id, which needs the key first. When both live
in one Redis cache (``RATE_LIMIT_CACHE_ALIAS`` = ``KEY_CACHE_ALIAS``), a rate is set and the view
runs ``APIKeyRateThrottle``, authentication sends the MGET and the INCR + EXPIRE in one pipeline,
the counter named by the secret's hash (known before the lookup, as the key entry's name is), and
leaves the count on the request (``Counted``); the throttle takes it rather than counting again.
The throttle names its counter the same way whenever this path is on, so a request this path did
not count (the cache failed) still counts against the same counter.

A request counted here whose throttle never took the count (refused before it: the address's
failed-lookup limit, a revoked, expired or disabled key, a scope it lacks) is taken back (DECR)
by ``AccountScopedMixin`` (``release_unused``): in ``handle_exception`` (every refusal, and an
uncaught error, which never reaches ``finalize_response``) and after ``check_throttles`` (a throttle
that counted itself, the rate having changed in between); both run in the async dispatch's worker
thread, never on the event loop. So the counts are today's. A counter given back to zero is
deleted (``_GIVE_BACK``). Not given back when its key is known not to exist (no such hash, or the
cache says ``UNKNOWN``) and the window is at most a minute: that counter is nobody's and expires
with its window (TTL window + 1 s), at most one small Redis key per such request per window, as the
key cache's ``UNKNOWN`` entries already are; with a longer window it is deleted. Headers, 429s and
a cache that is down (authentication reads on its own, the throttle lets the request through; both
log) are the throttle's as before. Switching the path on or off, or a mix of processes during a deploy, starts
new counters for the current window (public id vs hash): up to twice the limit for that window.

What it reaches into: Django's ``RedisCache`` client (``_cache.get_client``, ``_serializer``), so
``tests/rivya_api/keys/test_onetrip.py`` compares it with the two-round-trip path request by
request. ``RIVYA_API["RATE_LIMIT_IN_AUTH_TRIP"] = False`` switches it off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from rivya_api.conf import api_settings
from rivya_api.keys import keystore
from rivya_api.keys.rates import parse_rate

logger = logging.getLogger(__name__)

ATTRIBUTE = "rivya_rate_limit_counted"

# A count for a hash no key has is left to expire when its window is this short (its counter lives
# no longer than the window + 1 s, about as long as the key cache's ``UNKNOWN`` entry); with a
# longer window (``"10000/day"``) every random secret would leave a key for up to a day, so it is
# given back (deleted) like any other.
NOBODYS_WINDOW_KEPT = 60

# Give one count back; a counter that falls to zero or below is deleted rather than left (with its
# TTL, up to a day for a day's window) or recreated without one (DECR of a counter that expired
# meanwhile makes -1 with no TTL). Atomic, so a request counting meanwhile keeps its count.
_GIVE_BACK = """
local left = redis.call('DECR', KEYS[1])
if left <= 0 then redis.call('DEL', KEYS[1]) end
return left
"""


@dataclass
class Counted:
    """The count authentication took for the throttle."""

    key_hash: str
    name: str  # the counter
    window: int
    now: float  # the throttle's clock when counted
    count: int
    taken: bool = False  # by the throttle, or given back
    nobody: bool = False  # the hash is no key's: nothing to give back


def cache() -> Any:
    """The Redis cache holding both the key entries and the counters when this path is on, else None."""
    if not (api_settings.RATE_LIMIT_IN_AUTH_TRIP and api_settings.AUTH_CACHE_READS_BATCHED):
        return None
    if api_settings.RATE_LIMIT_CACHE_ALIAS != api_settings.KEY_CACHE_ALIAS:
        return None
    found = caches[api_settings.KEY_CACHE_ALIAS]
    return found if isinstance(found, RedisCache) and hasattr(found, "_cache") else None


def counter_name(key: Any, window: int, window_start: int) -> str:
    """The name of the key's counter for a window: by the secret's hash on this path, else by public id."""
    if cache() is not None:
        return f"rivya_api:ratelimit:h:{key.key_hash}:{window}:{window_start}"
    return f"rivya_api:ratelimit:{key.public_id}:{window}:{window_start}"


def _rate_limit_throttle(request: Any) -> Any:
    """The view's ``APIKeyRateThrottle`` (one that takes a ``Counted``), or None."""
    view = (getattr(request, "parser_context", None) or {}).get("view")
    if view is None:
        return None
    for throttle in view.get_throttles():
        if getattr(throttle, "takes_counted", False):
            return throttle
    return None


def reads_and_count(request: Any, key_hash: str, reads: list[str | None]) -> list[Any] | None:
    """The cached values of ``reads`` (None where absent or not named), the request counted in the
    same round trip (``Counted`` on the request); None when this path does not apply.

    On a cache error each is ``keystore.UNREAD``: the caller reads them on its own (and logs that the
    cache is down), and the throttle, finding no count, counts itself (or lets the request through).
    """
    redis = cache()
    rate = parse_rate(api_settings.RATE_LIMIT) if redis is not None else None
    throttle = _rate_limit_throttle(request) if rate is not None else None
    if throttle is None:
        return None
    window = rate[1]
    now = throttle.timer()
    window_start = int(now // window) * window
    name = f"rivya_api:ratelimit:h:{key_hash}:{window}:{window_start}"
    named = [redis.make_and_validate_key(read) for read in reads if read is not None]
    counter = redis.make_and_validate_key(name)
    try:
        pipe = redis._cache.get_client(counter, write=True).pipeline()
        if named:
            pipe.mget(named)
        pipe.incr(counter)
        pipe.expire(counter, window + 1)
        results = pipe.execute()
    except Exception:
        return [keystore.UNREAD for _ in reads]
    loads = redis._cache._serializer.loads
    values = iter(results[0] if named else [])
    found = [None if read is None else next(values) for read in reads]
    _django_request(request).__dict__[ATTRIBUTE] = Counted(key_hash, name, window, now, int(results[-2]))
    return [None if value is None else _loaded(loads, value) for value in found]


def _loaded(loads: Any, value: bytes) -> Any:
    """A value as the cache's serializer reads it; one it cannot read is ``UNREAD`` (as get_many's error)."""
    try:
        return loads(value)
    except Exception:
        return keystore.UNREAD


def _django_request(request: Any) -> Any:
    return getattr(request, "_request", request)  # DRF's Request wraps Django's


def _counted(request: Any) -> Counted | None:
    return None if request is None else _django_request(request).__dict__.get(ATTRIBUTE)


def mark_nobodys(request: Any) -> None:
    """The request's key is known not to exist: its counter is nobody's, nothing to give back."""
    counted = _counted(request)
    if counted is not None:
        counted.nobody = True


def take(request: Any, key: Any, window: int) -> Counted | None:
    """The count authentication took for this key and window, once; None if there is none."""
    counted = _counted(request)
    if counted is None or counted.taken or counted.key_hash != key.key_hash or counted.window != window:
        return None
    counted.taken = True
    return counted


def release_unused(request: Any) -> None:
    """Give back a count no throttle took (the request was refused before its throttle ran)."""
    counted = _counted(request)
    if counted is None or counted.taken:
        return
    counted.taken = True
    if counted.nobody and counted.window <= NOBODYS_WINDOW_KEPT:
        return
    redis = caches[api_settings.KEY_CACHE_ALIAS]
    try:
        key = redis.make_and_validate_key(counted.name)
        redis._cache.get_client(key, write=True).eval(_GIVE_BACK, 1, key)
    except Exception:
        logger.warning("Rate-limit cache unavailable; could not give back an unused count", exc_info=True)
