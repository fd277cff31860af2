"""What every webhooks service shares: the injectable clock, timestamps, delivery states."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.utils import timezone

from rivya_webhooks.models import WebhookDelivery
from rivya_webhooks.registry import event_types as registered_event_types

# One logger for the package, so log configuration keeps naming rivya_webhooks.services.
logger = logging.getLogger("rivya_webhooks.services")

Clock = Callable[[], datetime]

PENDING = WebhookDelivery.State.PENDING
SUCCEEDED = WebhookDelivery.State.SUCCEEDED
FAILED = WebhookDelivery.State.FAILED


def now_from(clock: Clock | None) -> datetime:
    return (clock or timezone.now)()


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the API renders every timestamp."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def registered_names() -> str:
    """The registered event type names, for error messages."""
    return ", ".join(event_type.name for event_type in registered_event_types())
