"""Services of a hold's lease: renew (and claim) it; the rest of a hold's life is ``holds``'s.

Split from ``holds`` to keep each module short (``rivya_billing.services`` exports ``credits_hold_renew``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from rivya_billing.conf import billing_settings
from rivya_billing.models import Hold, HoldState
from rivya_billing.services import pg_renew
from rivya_billing.services.ledger import _check_amount, _check_lease, _check_reference, _lock_hold, _not_pending, _now

__all__ = ["credits_hold_renew"]


def credits_hold_renew(
    *,
    account: Any,
    reference: str,
    lease_seconds: int | None = None,
    lease_token: int | None = None,
    now: datetime | None = None,
) -> Hold:
    """Extend the lease of the pending hold ``reference`` to ``now + lease_seconds``.

    Without ``lease_token`` the caller claims the hold: the token is incremented
    and returned on the hold (``hold.lease_token``), and any earlier claimant's
    token goes stale. With ``lease_token`` the caller renews its own claim and
    gets ``StaleHoldError`` if it was superseded. A lapsed lease cannot be renewed
    (``StaleHoldError``): the work is presumed dead and the sweeper returns the
    credits. Atomic; locks the hold only. On PostgreSQL one ``UPDATE … RETURNING`` (``pg_renew``;
    in a savepoint inside a caller's transaction, as the plain path), the plain path deciding
    whatever it refuses.
    """
    return _renew(account=account, reference=reference, lease_seconds=lease_seconds, lease_token=lease_token, now=now)


def _hold_renew_joined(
    *,
    account: Any,
    reference: str,
    lease_seconds: int | None = None,
    lease_token: int | None = None,
    now: datetime | None = None,
) -> Hold:
    """``credits_hold_renew`` whose PostgreSQL statement takes no savepoint inside the caller's
    transaction (two round trips fewer on a generation's claim and heartbeat). Not public: only
    for a caller whose whole transaction a database error (lock timeout, deadlock) ends; a
    caller that caught it would be left with an aborted transaction and lose its work."""
    return _renew(
        account=account,
        reference=reference,
        lease_seconds=lease_seconds,
        lease_token=lease_token,
        now=now,
        savepoint=False,
    )


def _renew(
    *,
    account: Any,
    reference: str,
    lease_seconds: int | None,
    lease_token: int | None,
    now: datetime | None,
    savepoint: bool = True,
) -> Hold:
    _check_reference(reference)
    now = _now(now)
    seconds = billing_settings.HOLD_RENEW_SECONDS if lease_seconds is None else lease_seconds
    _check_amount(seconds, param="lease_seconds")
    expires = now + timedelta(seconds=seconds)
    if pg_renew.enabled():
        hold = pg_renew.renew(
            account=account,
            reference=reference,
            lease_token=lease_token,
            now=now,
            expires=expires,
            savepoint=savepoint,
        )
        if hold is not None:
            return hold
    return _renew_locked(account=account, reference=reference, lease_token=lease_token, now=now, expires=expires)


@transaction.atomic
def _renew_locked(*, account: Any, reference: str, lease_token: int | None, now: datetime, expires: datetime) -> Hold:
    """The portable renew: the hold's row lock, the checks, one UPDATE (SQLite; any database)."""
    hold = _lock_hold(account=account, reference=reference)
    if hold.state != HoldState.PENDING:
        raise _not_pending(hold, "renew")
    _check_lease(hold, lease_token=lease_token, now=now, action="renew")
    hold.lease_expires_at = expires
    if lease_token is None:
        hold.lease_token += 1
    Hold.objects.filter(pk=hold.pk).update(lease_expires_at=hold.lease_expires_at, lease_token=hold.lease_token)
    return hold
