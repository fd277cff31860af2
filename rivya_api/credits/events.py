"""The webhook event types of the credits resource, and the publisher of ``credits.low``.

Which wallet change crosses a low-balance threshold is decided by rivya_billing, in the
transaction of the change (``rivya_billing.models.LOW_BALANCE_NOTE``), as a notice row.
``credits_low_events_publish`` turns each notice into one ``credits.low`` event: the event
(the webhook outbox) and the notice's "published" mark commit in one transaction, so a
crossing is published once, never twice and never not at all.
"""

from __future__ import annotations

from typing import Any

from rivya_billing.models import LowBalanceNotice
from rivya_billing.services import credits_low_balance_notices_publish
from rivya_webhooks.registry import event_type_register
from rivya_webhooks.services import webhook_event_publish

CREDITS_LOW = "credits.low"

EVENT_TYPES = {
    CREDITS_LOW: (
        "The account's available credits fell below its low-balance threshold (once per crossing; "
        "re-armed when available is back at the threshold or above)."
    ),
}


def register_credits_event_types() -> None:
    for name, description in EVENT_TYPES.items():
        event_type_register(name, description)


def credits_low_payload(notice: LowBalanceNotice) -> dict[str, Any]:
    """The event's ``data``: the account's available credits right after the crossing, and the threshold."""
    return {"object": "credits_alert", "available": notice.available, "threshold": notice.threshold}


def _publish(notice: LowBalanceNotice) -> None:
    webhook_event_publish(account=notice.wallet.account, type=CREDITS_LOW, data=credits_low_payload(notice))


def credits_low_events_publish() -> int:
    """Publish a ``credits.low`` event for each crossing not published yet; returns how many (beat: 5 s)."""
    return credits_low_balance_notices_publish(publish=_publish)
