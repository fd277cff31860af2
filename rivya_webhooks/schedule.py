"""When to try a failed delivery again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from rivya_webhooks.conf import webhooks_settings


def retry_delay(*, retry_count: int, rng: random.Random | None = None) -> timedelta | None:
    """The wait after the ``retry_count``-th failed attempt (1-based), jittered; ``None`` when
    the schedule is used up and the delivery fails for good."""
    schedule = webhooks_settings.RETRY_SCHEDULE
    if retry_count < 1 or retry_count > len(schedule):
        return None
    jitter = float(webhooks_settings.RETRY_JITTER)
    factor = (rng or random).uniform(1 - jitter, 1 + jitter)
    return timedelta(seconds=float(schedule[retry_count - 1]) * factor)


def parse_retry_after(value: str, *, now: datetime) -> timedelta | None:
    """``Retry-After`` as delay-seconds or an HTTP date; ``None`` when absent or unreadable.

    Capped at ``MAX_RETRY_AFTER`` so a receiver cannot park deliveries for months.
    """
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - now
    if delay <= timedelta(0):
        return None
    return min(delay, timedelta(seconds=int(webhooks_settings.MAX_RETRY_AFTER)))
