"""A client that keeps presenting wrong keys is slowed down: failed key lookups are limited per address.

Every ``Authorization`` header that names no key (unknown or malformed) counts
against the client's address in a fixed window (``RIVYA_API["AUTH_FAILURE_LIMIT"]``,
default ``20/min``; ``off`` disables). Past the limit the address gets 429
``too_many_failed_authentications`` with ``Retry-After`` until the window ends,
without its keys being looked up, whatever it sends; a correct key is refused too
meanwhile, as a lock on a guessed door should be. Revoked and expired keys do not
count: they were real, and a client retrying one is misconfigured, not guessing.

The address is ``REMOTE_ADDR``: behind a proxy, the server trusts that proxy's
``X-Forwarded-For`` only when told to (``FORWARDED_ALLOW_IPS``), so a client cannot
pick its own address. Counters live in the rate-limit cache (Redis when configured).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache import caches

from rivya_api.common.errors import ApiError
from rivya_api.conf import api_settings
from rivya_api.keys.throttling import increment, parse_rate

logger = logging.getLogger(__name__)


def _window() -> tuple[int, int, float] | None:
    """``(limit, window seconds, seconds left in it)``, or None when the limit is off."""
    rate = parse_rate(api_settings.AUTH_FAILURE_LIMIT)
    if rate is None:
        return None
    limit, window = rate
    now = time.time()
    return limit, window, (int(now // window) + 1) * window - now


def _counter_name(request: Any, window: int) -> str:
    address = request.META.get("REMOTE_ADDR") or "unknown"
    return f"rivya_api:authfail:{address}:{window}:{int(time.time() // window)}"


def counter_name(request: Any) -> str | None:
    """The name of this address's counter for the current window, or None when the limit is off."""
    window = _window()
    return None if window is None else _counter_name(request, window[1])


def failed_lookups_check(request: Any, count: Any = None, *, read: bool = True) -> None:
    """Raise 429 when this client's address has used up its failed lookups for the window.

    ``read=False``: ``count`` is the counter as the caller already read it (None when absent).
    """
    window = _window()
    if window is None:
        return
    limit, seconds, left = window
    if read:
        try:
            count = caches[api_settings.RATE_LIMIT_CACHE_ALIAS].get(_counter_name(request, seconds))
        except Exception:
            logger.warning("Rate-limit cache unavailable; not limiting failed key lookups", exc_info=True)
            return
    if int(count or 0) >= limit:
        wait = max(1, int(left + 0.999))
        raise ApiError(
            "Too many requests with an invalid API key from this address; retry after the Retry-After delay.",
            code="too_many_failed_authentications",
            status=429,
            headers={"Retry-After": str(wait)},
        )


def failed_lookup_record(request: Any) -> None:
    """Count one failed lookup against this client's address."""
    window = _window()
    if window is None:
        return
    _, seconds, _ = window
    try:
        increment(_counter_name(request, seconds), seconds + 1)
    except Exception:
        logger.warning("Rate-limit cache unavailable; not counting a failed key lookup", exc_info=True)
