"""Services that move the balance directly: grant, adjust (support corrections) and refund."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from rivya_billing.exceptions import (
    InsufficientCreditsError,
    InvalidAmountError,
    RefundNotAllowedError,
)
from rivya_billing.models import CreditGrant, EntryType, Hold, HoldState, LedgerEntry
from rivya_billing.services.ledger import (
    _actor,
    _check_amount,
    _check_reference,
    _conflict,
    _Line,
    _lock_hold,
    _lock_wallet,
    _lock_wallet_by_id,
    _now,
    _post,
)

__all__ = ["credits_adjust", "credits_grant", "credits_refund"]


@transaction.atomic
def credits_grant(
    *,
    account: Any,
    amount: int,
    reference: str,
    actor: str = "",
    description: str = "",
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> LedgerEntry:
    """Add ``amount`` credits to the account's wallet (creating the wallet on first use).

    With ``expires_at`` (timezone-aware, after ``now``) the grant expires: spending draws
    from the grant that expires soonest first, and what is left of it at ``expires_at``
    (never credits held) leaves the wallet as an ``expire`` entry (``credits_expire_grants``,
    see ``models.GRANT_EXPIRY_NOTE``).

    Idempotent by ``reference`` among the wallet's grants: a repeat returns the
    first entry; a repeat with a different amount or expiry raises ``ReferenceConflictError``.
    Atomic; takes the wallet's row lock.
    """
    _check_amount(amount)
    _check_reference(reference)
    now = _now(now)
    if expires_at is not None:
        if not isinstance(expires_at, datetime) or timezone.is_naive(expires_at):
            raise InvalidAmountError("expires_at must be a timezone-aware datetime.", param="expires_at")
    wallet = _lock_wallet(account=account, create=True)
    assert wallet is not None
    existing = LedgerEntry.objects.filter(wallet=wallet, type=EntryType.GRANT, reference=reference).first()
    if existing is not None:
        if existing.amount != amount:
            raise _conflict("Grant", reference, "amount", existing.amount, amount)
        existing_expiry = (
            CreditGrant.objects.filter(wallet=wallet, reference=reference).values_list("expires_at", flat=True).first()
        )
        if existing_expiry != expires_at:
            raise _conflict("Grant", reference, "expires_at", existing_expiry, expires_at)
        return existing
    if expires_at is not None and expires_at <= now:
        raise InvalidAmountError(f"expires_at must be in the future, not {expires_at.isoformat()}.", param="expires_at")
    line = _Line(EntryType.GRANT, amount, reference, description=description)
    (entry,) = _post(wallet=wallet, lines=[line], actor=_actor(actor), now=now)
    if expires_at is not None:
        CreditGrant.objects.create(
            wallet=wallet, reference=reference, amount=amount, remaining=amount, expires_at=expires_at, created_at=now
        )
    return entry


@transaction.atomic
def credits_adjust(
    *, account: Any, amount: int, reference: str, reason: str, actor: str = "", now: datetime | None = None
) -> LedgerEntry:
    """Correct the balance by ``amount`` (positive adds, negative removes), with a required reason.

    A negative adjustment cannot take more than is available (held credits stay
    covered): ``InsufficientCreditsError``. Idempotent by ``reference`` among the
    wallet's adjustments. Atomic; takes the wallet's row lock.
    """
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidAmountError("amount must be a non-zero integer.")
    _check_reference(reference)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidAmountError("An adjustment needs a reason.", param="reason")
    now = _now(now)
    wallet = _lock_wallet(account=account, create=True)
    assert wallet is not None
    existing = LedgerEntry.objects.filter(wallet=wallet, type=EntryType.ADJUST, reference=reference).first()
    if existing is not None:
        if existing.balance_delta != amount:
            raise _conflict("Adjustment", reference, "amount", existing.balance_delta, amount)
        return existing
    if amount < 0 and wallet.available < -amount:
        raise InsufficientCreditsError(
            f"Cannot remove {-amount} credits: {wallet.available} available.",
            requested=-amount,
            available=wallet.available,
        )
    line = _Line(EntryType.ADJUST, abs(amount), reference, sign=1 if amount > 0 else -1, description=reason.strip())
    (entry,) = _post(wallet=wallet, lines=[line], actor=_actor(actor), now=now)
    return entry


@transaction.atomic
def credits_refund(
    *,
    account: Any,
    reference: str,
    charge_reference: str,
    amount: int | None = None,
    actor: str = "",
    description: str = "",
    now: datetime | None = None,
) -> LedgerEntry:
    """Return credits that the settled hold ``charge_reference`` charged (all that is left by default).

    ``reference`` names the refund itself (an admin action, a dispute) and is
    its idempotency key: a repeat returns the first refund entry; a repeat for
    another charge or with another amount raises ``ReferenceConflictError``.
    Refunds of one charge never add up to more than it charged
    (``RefundNotAllowedError``). Atomic; locks the hold, then the wallet.
    """
    _check_reference(reference)
    _check_reference(charge_reference, param="charge_reference")
    if amount is not None:
        _check_amount(amount)
    now = _now(now)
    hold = _lock_hold(account=account, reference=charge_reference, param="charge_reference")
    wallet = _lock_wallet_by_id(hold.wallet_id)
    existing = LedgerEntry.objects.filter(wallet=wallet, type=EntryType.REFUND, reference=reference).first()
    if existing is not None:
        if existing.hold_id != hold.pk:
            other = Hold.objects.filter(pk=existing.hold_id).values_list("reference", flat=True).first()
            raise _conflict("Refund", reference, "charge_reference", other, charge_reference)
        if amount is not None and existing.amount != amount:
            raise _conflict("Refund", reference, "amount", existing.amount, amount)
        return existing
    if hold.state != HoldState.SETTLED or hold.charged == 0:
        raise RefundNotAllowedError(
            f"Hold {charge_reference!r} charged nothing ({hold.state}); there is nothing to refund.",
            param="charge_reference",
        )
    refundable = hold.charged - hold.refunded
    amount = refundable if amount is None else amount
    if amount > refundable or refundable == 0:
        raise RefundNotAllowedError(
            f"Cannot refund {amount} of {charge_reference!r}: {refundable} of {hold.charged} is left to refund."
        )
    (entry,) = _post(
        wallet=wallet,
        lines=[_Line(EntryType.REFUND, amount, reference, hold.pk, description=description)],
        actor=_actor(actor),
        now=now,
    )
    Hold.objects.filter(pk=hold.pk).update(refunded=F("refunded") + amount)
    hold.refunded += amount
    return entry
