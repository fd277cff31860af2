"""Services of the low-balance alert: set the threshold, and publish the crossings it recorded.

The crossing itself is not decided here but by the wallet's trigger, in the transaction of
whatever changed the wallet (``rivya_billing.models.LOW_BALANCE_NOTE``); these services
only change the threshold and drain the notices the trigger wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction

from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import InvalidAmountError
from rivya_billing.metrics import sweep_row_failed
from rivya_billing.models import LowBalanceNotice, Wallet
from rivya_billing.services.ledger import _lock_wallet, _now

logger = logging.getLogger("rivya_billing.services")

__all__ = ["credits_alert_set", "credits_low_balance_notices_publish"]


def _check_threshold(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidAmountError(
            "low_balance_threshold must be a positive integer or null.", param="low_balance_threshold"
        )
    return value


@transaction.atomic
def credits_alert_set(*, account: Any, low_balance_threshold: int | None) -> Wallet:
    """Set (or, with ``None``, clear) the account's low-balance threshold; returns the wallet.

    A new threshold starts armed, and the wallet's trigger judges it at once in this
    transaction: if available is already below it, one ``credits.low`` notice is written
    now, not at the next spend. Setting the threshold it already has changes nothing (the
    alert is not re-armed), so repeating the call is harmless. Creates the (empty) wallet
    if the account has none. Atomic; takes the wallet's row lock.
    """
    threshold = _check_threshold(low_balance_threshold)
    wallet = _lock_wallet(account=account, create=True)
    assert wallet is not None
    if wallet.low_balance_threshold == threshold:
        return wallet
    Wallet.objects.filter(pk=wallet.pk).update(low_balance_threshold=threshold, low_balance_armed=True)
    wallet.refresh_from_db(fields=["low_balance_threshold", "low_balance_armed"])
    return wallet


def credits_low_balance_notices_publish(
    *, publish: Callable[[LowBalanceNotice], Any], batch_size: int | None = None, now: datetime | None = None
) -> int:
    """Hand each unpublished low-balance notice to ``publish`` exactly once; returns how many.

    Each notice is claimed in its own transaction (``SELECT … FOR UPDATE SKIP LOCKED``,
    so concurrent runs share the work instead of doubling it), ``publish(notice)`` runs
    inside that transaction (it writes the webhook event there: the outbox), and the notice
    is marked published by an UPDATE conditional on it not being published yet. If
    ``publish`` raises, that transaction rolls back and the notice is tried again on the
    next run; the others still go. ``notice.wallet.account`` is loaded.
    """
    now = _now(now)
    batch_size = batch_size or billing_settings.NOTICE_BATCH_SIZE
    due = list(
        LowBalanceNotice.objects.filter(published_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    published = 0
    for pk in due:
        try:
            with transaction.atomic():
                notice = (
                    LowBalanceNotice.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("wallet__account")
                    .filter(pk=pk, published_at__isnull=True)
                    .first()
                )
                if notice is None:
                    continue
                publish(notice)
                if LowBalanceNotice.objects.filter(pk=pk, published_at__isnull=True).update(published_at=now) != 1:
                    raise RuntimeError(f"Low-balance notice {pk} was published under its row lock.")
                published += 1
        except Exception:
            logger.exception("Could not publish low-balance notice %s; moving on to the next", pk)
            sweep_row_failed(job="low_balance_notices_publish")
    return published
