"""A key's credit limit at work: its reservations count against it, and reaching it is announced once per window.

The limit itself is a ``rivya_billing`` spend limit the key points at
(``APIKey.spend_limit_id``); billing checks it in the same statement that
reserves from the wallet. Here the API publishes ``key.credit_limit_reached``
the first time in a window that a reservation through the key takes ``used`` up
to the limit, or that one is refused for it (``spend_limit_mark_reached`` makes
that once, whichever process gets there first):

* after a reservation, in the caller's transaction (``key_reservation_observe``),
  so the event commits with the hold;
* after a refusal (``key_limit_refused``, called by the API views' exception
  handling once the refused work has rolled back), in its own transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from rivya_api.common.dates import iso
from rivya_api.keys.models import APIKey
from rivya_billing import services as billing
from rivya_billing.exceptions import SpendLimitExceededError
from rivya_webhooks.registry import event_type_register
from rivya_webhooks.services import webhook_event_publish

logger = logging.getLogger("rivya_api.keys")

LIMIT_REACHED = "key.credit_limit_reached"


def register_key_event_types() -> None:
    event_type_register(
        LIMIT_REACHED,
        "An API key reached its credit limit: sent once per window, when a reservation uses it up or is refused.",
    )


def key_reservation_observe(hold: Any) -> None:
    """After a reservation through a limited key: announce the limit when this one reached it."""
    state = getattr(hold, "spend_limit_state", None)
    if state is not None and state[0] >= state[1]:
        _announce(limit_id=hold.spend_limit_id, window_start=state[2])


def key_limit_refused(error: SpendLimitExceededError) -> None:
    """After a reservation the key's limit refused (its work rolled back): announce it, once per window.

    The client's 402 does not depend on the announcement: a failure here is logged, not raised.
    """
    try:
        with transaction.atomic():
            _announce(limit_id=error.limit_id, window_start=error.window_start)
    except Exception:
        logger.exception("Could not announce that spend limit %s was reached", error.limit_id)


def _announce(*, limit_id: int, window_start: datetime) -> None:
    if not billing.spend_limit_mark_reached(pk=limit_id, window_start=window_start):
        return
    key = APIKey.objects.filter(spend_limit_id=limit_id).select_related("account").order_by("-created_at").first()
    limit = billing.spend_limit_get(pk=limit_id)
    if key is None or limit is None:
        return
    used, start, resets_at = billing.spend_limit_usage(limit)
    webhook_event_publish(
        account=key.account,
        type=LIMIT_REACHED,
        data={
            "object": "api_key.credit_limit",
            "key": {"id": key.public_id, "name": key.name},
            "credit_limit": {
                "credits": limit.credits,
                "window": limit.window,
                "used": used,
                "resets_at": iso(resets_at),
            },
            "window_start": iso(start),
        },
    )
