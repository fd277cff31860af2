"""The expiry of expiring grants: the sweep that lets what is left of a due grant leave the wallet.

See ``rivya_billing.models.GRANT_EXPIRY_NOTE`` for the rules (drawing is in ``ledger._post``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q

from rivya_billing.conf import billing_settings
from rivya_billing.metrics import sweep_row_failed
from rivya_billing.models import CreditGrant, EntryType
from rivya_billing.services.ledger import _Line, _lock_wallet_by_id, _now, _post

logger = logging.getLogger("rivya_billing.services")

__all__ = ["credits_expire_grants", "credits_grant_expire"]


def _expirable(grant: CreditGrant, *, held: int) -> int:
    """What of the due ``grant`` is not covered by holds (held credits count soonest expiry first)."""
    before = (
        CreditGrant.objects.filter(wallet_id=grant.wallet_id, remaining__gt=0)
        .filter(Q(expires_at__lt=grant.expires_at) | Q(expires_at=grant.expires_at, pk__lt=grant.pk))
        .values_list("remaining", flat=True)
    )
    held_here = min(grant.remaining, max(0, held - sum(before)))
    return grant.remaining - held_here


@transaction.atomic
def credits_grant_expire(*, grant_id: int, now: datetime | None = None, actor: str = "system:sweeper") -> int:
    """Expire what is left of the due grant bucket ``grant_id`` and is not held; returns the credits expired.

    Locks the wallet, then posts one ``expire`` line (no hold, balance -e, reference = the
    grant's) and moves ``e`` from ``remaining`` to ``expired``. Returns 0 (posting nothing) for
    a grant not due at ``now``, already empty, or whose rest is all held. Atomic.
    """
    now = _now(now)
    wallet_id = CreditGrant.objects.filter(pk=grant_id).values_list("wallet_id", flat=True).first()
    if wallet_id is None:
        return 0
    wallet = _lock_wallet_by_id(wallet_id)
    # Read under the wallet lock: every writer of buckets holds it.
    grant = CreditGrant.objects.get(pk=grant_id)
    if grant.remaining == 0 or grant.expires_at > now:
        return 0
    expiring = _expirable(grant, held=wallet.held)
    assert expiring <= wallet.available, (expiring, wallet.available)
    if expiring <= 0:
        return 0
    line = _Line(
        EntryType.EXPIRE, expiring, grant.reference, description="expiring grant: what was left", grant_id=grant.pk
    )
    _post(wallet=wallet, lines=[line], actor=actor, now=now)
    CreditGrant.objects.filter(pk=grant.pk).update(remaining=F("remaining") - expiring, expired=F("expired") + expiring)
    return expiring


def credits_expire_grants(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """The expiry sweep: expire due grants (each in its own transaction); returns the credits expired.

    A grant whose rest is held stays due (it is looked at again by the next sweep, after a
    release or a settle). Safe to run from several processes at once: each bucket is decided
    under its wallet's row lock.
    """
    now = _now(now)
    batch_size = batch_size or billing_settings.EXPIRE_BATCH_SIZE
    due = list(
        CreditGrant.objects.filter(remaining__gt=0, expires_at__lte=now)
        .order_by("expires_at", "pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    expired = 0
    for pk in due:
        try:
            expired += credits_grant_expire(grant_id=pk, now=now)
        except Exception:
            # One grant the sweep cannot expire must not keep it from the others (tried again next run).
            logger.exception("Could not expire grant %s; moving on to the next", pk)
            sweep_row_failed(job="expire_grants")
    if expired:
        logger.info("Expired %s credits of due grants", expired)
    return expired
