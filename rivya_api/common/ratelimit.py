"""Rate-limit state of a request and the headers and 429 it turns into.

A throttle stores a ``RateLimitState`` on the Django request
(``request.rivya_rate_limit``); ``AccountScopedMixin.finalize_response`` (and
any async view, through ``apply_rate_limit_headers``) copies it into the
``x-ratelimit-*-requests`` headers of every authenticated response. Durations
are written the way OpenAI writes them (``1m30s``, ``59s``, ``250ms``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rivya_api.common.errors import ApiError

ATTRIBUTE = "rivya_rate_limit"


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_seconds: float  # until the window's counter starts over

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": duration_text(self.reset_seconds),
        }


def duration_text(seconds: float) -> str:
    """``250ms`` below a second, else whole seconds rounded up as ``1h2m3s`` / ``5m0s`` / ``59s``."""
    millis = max(0, math.ceil(seconds * 1000))
    if millis < 1000:
        return f"{millis}ms"
    total = math.ceil(millis / 1000)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _django_request(request: Any) -> Any:
    return getattr(request, "_request", request)  # DRF's Request wraps Django's


def rate_limit_state_set(request: Any, state: RateLimitState) -> None:
    setattr(_django_request(request), ATTRIBUTE, state)


def rate_limit_state(request: Any) -> RateLimitState | None:
    return getattr(_django_request(request), ATTRIBUTE, None)


def apply_rate_limit_headers(request: Any, response: Any) -> Any:
    """Copy the request's rate-limit state, if a throttle recorded one, into ``response``."""
    state = rate_limit_state(request)
    if state is not None:
        for name, value in state.headers().items():
            response[name] = value
    return response


def rate_limited_error(wait_seconds: float | None) -> ApiError:
    """The 429 in the error shape, with ``Retry-After`` (seconds) and ``retry-after-ms``."""
    wait = max(0.001, float(wait_seconds or 1))
    return ApiError(
        "Rate limit exceeded for this API key; retry after the Retry-After delay.",
        code="rate_limit_exceeded",
        status=429,
        headers={"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(math.ceil(wait * 1000))},
    )
