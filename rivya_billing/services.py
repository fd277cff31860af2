"""Services of the credit ledger: the only code that writes wallets, holds and entries.

The API and a host's Studio call these same functions, so both spend one wallet.

Every service is atomic (one database transaction; inside a caller's
transaction it joins it, so e.g. a chat turn can settle in the transaction that
saves the assistant message) and idempotent by its reference: repeating a call
has the effect of doing it once and returns the first result; repeating a
reference with different arguments raises ``ReferenceConflictError`` naming the
argument. Errors are typed (``rivya_billing.exceptions``).

Concurrency. Writes to a wallet are serialised by the wallet's row, never by a
read-check-write in Python:

- the hot path, ``credits_reserve``, is on PostgreSQL one statement: a
  conditional ``UPDATE … WHERE balance - held >= amount`` of the wallet with the
  hold and ledger INSERTs chained in the same statement (measured fastest in
  ``/work/shared/research/ledger-anchors.md`` and ``bench/ledger_reserve.py``);
- every other service takes row locks (``SELECT … FOR NO KEY UPDATE``), always
  hold before wallet, decides under the lock and writes with an UPDATE that is
  itself guarded by the wallet's sequence number and the database's check
  constraints (``balance >= held >= 0``).

On SQLite (the embedded default) ``transaction_mode: IMMEDIATE`` takes the
database's write lock at BEGIN, so writers are serialised and the same code is
correct there.

Time. Holds are leases: ``now`` defaults to the application clock
(``timezone.now()``) and can be passed in (tests, replays). The hold's state in
the database, not the clocks, decides races: a settle and an expiry of the same
hold both need the hold's row in state ``pending``, and only one gets it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import (
    HoldLeaseActiveError,
    HoldNotFoundError,
    HoldNotPendingError,
    InsufficientCreditsError,
    InvalidAmountError,
    InvalidReferenceError,
    LedgerConcurrencyError,
    ReferenceConflictError,
    RefundNotAllowedError,
    StaleHoldError,
)
from rivya_billing.models import (
    EFFECTS,
    EntryType,
    Hold,
    HoldState,
    LedgerEntry,
    Wallet,
    new_entry_id,
    new_hold_id,
)

logger = logging.getLogger(__name__)

OVERRUN_POLICIES = ("cap", "available")

__all__ = [
    "credits_adjust",
    "credits_expire_lapsed_holds",
    "credits_grant",
    "credits_hold_expire",
    "credits_hold_renew",
    "credits_refund",
    "credits_release",
    "credits_reserve",
    "credits_settle",
]


# --- validation -------------------------------------------------------------------


def _check_amount(amount: Any, *, minimum: int = 1, param: str = "amount") -> int:
    # bool is an int subclass; True credits is a bug, not one credit.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidAmountError(f"{param} must be an integer, not {type(amount).__name__}.", param=param)
    if amount < minimum:
        raise InvalidAmountError(f"{param} must be at least {minimum}, not {amount}.", param=param)
    return amount


def _check_reference(reference: Any, *, param: str = "reference") -> str:
    if not isinstance(reference, str) or not reference or len(reference) > 255:
        raise InvalidReferenceError(f"{param} must be a non-empty string of at most 255 characters.", param=param)
    return reference


def _actor(actor: Any) -> str:
    return str(actor or "")[:200]


def _now(now: datetime | None) -> datetime:
    if now is None:
        return timezone.now()
    if timezone.is_naive(now):
        raise ValueError("now must be timezone-aware")
    return now


def _conflict(what: str, reference: str, param: str, existing: Any, given: Any) -> ReferenceConflictError:
    return ReferenceConflictError(
        f"{what} {reference!r} was already made with {param}={existing!r}; this call has {param}={given!r}.",
        param=param,
        existing=existing,
        given=given,
    )


# --- wallet and hold locks -----------------------------------------------------------


def _lock_wallet(*, account: Any, create: bool) -> Wallet | None:
    """The account's wallet, row-locked for this transaction; created (empty) when asked."""
    locked = Wallet.objects.select_for_update(no_key=True)
    wallet = locked.filter(account=account).first()
    if wallet is None and create:
        # ON CONFLICT DO NOTHING: two first grants racing both end up locking the one row.
        Wallet.objects.bulk_create([Wallet(account=account)], ignore_conflicts=True)
        wallet = locked.get(account=account)
    return wallet


def _lock_wallet_by_id(wallet_id: int) -> Wallet:
    return Wallet.objects.select_for_update(no_key=True).get(pk=wallet_id)


def _lock_hold(*, account: Any, reference: str, param: str = "reference") -> Hold:
    """The hold, row-locked (before its wallet: the one lock order every service uses)."""
    hold = (
        Hold.objects.select_for_update(no_key=True, of=("self",))
        .filter(wallet__account=account, reference=reference)
        .first()
    )
    if hold is None:
        raise HoldNotFoundError(f"No hold with reference {reference!r} in this wallet.", param=param)
    return hold


# --- posting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    type: str
    amount: int
    reference: str
    hold_id: int | None = None
    sign: int = 1  # only ``adjust`` uses -1
    description: str = ""


def _post(*, wallet: Wallet, lines: Sequence[_Line], actor: str, now: datetime) -> list[LedgerEntry]:
    """Append ``lines`` to the row-locked ``wallet`` and move its totals in the same transaction.

    The wallet UPDATE is guarded by the sequence number read under the lock, so a
    writer that slipped past the lock would make it fail instead of forking the
    ledger; the check constraints refuse any result with ``balance < held``.
    """
    balance, held, sequence = wallet.balance, wallet.held, wallet.last_sequence
    entries = []
    for line in lines:
        if line.type == EntryType.ADJUST:
            balance_delta, held_delta = line.sign * line.amount, 0
        else:
            balance_mult, held_mult = EFFECTS[line.type]
            balance_delta, held_delta = balance_mult * line.amount, held_mult * line.amount
        balance += balance_delta
        held += held_delta
        sequence += 1
        entries.append(
            LedgerEntry(
                public_id=new_entry_id(),
                wallet_id=wallet.pk,
                sequence=sequence,
                type=line.type,
                amount=line.amount,
                balance_delta=balance_delta,
                held_delta=held_delta,
                balance_after=balance,
                held_after=held,
                reference=line.reference,
                hold_id=line.hold_id,
                actor=actor,
                description=line.description[:500],
                created_at=now,
            )
        )
    updated = Wallet.objects.filter(pk=wallet.pk, last_sequence=wallet.last_sequence).update(
        balance=F("balance") + (balance - wallet.balance),
        held=F("held") + (held - wallet.held),
        last_sequence=sequence,
        updated_at=now,
    )
    if updated != 1:
        raise LedgerConcurrencyError(f"Wallet {wallet.pk} changed under its row lock; nothing was posted.")
    LedgerEntry.objects.bulk_create(entries)
    wallet.balance, wallet.held, wallet.last_sequence, wallet.updated_at = balance, held, sequence, now
    return entries


def _resolve_hold(hold: Hold, **fields: Any) -> None:
    """Move a locked pending hold to its final state (the UPDATE re-checks ``pending``)."""
    updated = Hold.objects.filter(pk=hold.pk, state=HoldState.PENDING).update(**fields)
    if updated != 1:
        raise LedgerConcurrencyError(f"Hold {hold.public_id} changed under its row lock.")
    for name, value in fields.items():
        setattr(hold, name, value)


def _not_pending(hold: Hold, action: str) -> HoldNotPendingError:
    error_class = StaleHoldError if hold.state == HoldState.EXPIRED else HoldNotPendingError
    return error_class(
        f"Cannot {action} hold {hold.reference!r}: it is already {hold.state}.",
        state=hold.state,
    )


def _check_lease(hold: Hold, *, lease_token: int | None, now: datetime, action: str) -> None:
    """Refuse a stale worker: the lease lapsed, or another worker claimed the hold since."""
    if lease_token is not None and lease_token != hold.lease_token:
        raise StaleHoldError(
            f"Cannot {action} hold {hold.reference!r}: lease token {lease_token} was superseded by {hold.lease_token}.",
            state=hold.state,
        )
    if hold.lease_expires_at <= now:
        raise StaleHoldError(
            f"Cannot {action} hold {hold.reference!r}: its lease lapsed at {hold.lease_expires_at.isoformat()}.",
            state=hold.state,
        )


# --- grant and adjust -----------------------------------------------------------------------


@transaction.atomic
def credits_grant(
    *, account: Any, amount: int, reference: str, actor: str = "", description: str = "", now: datetime | None = None
) -> LedgerEntry:
    """Add ``amount`` credits to the account's wallet (creating the wallet on first use).

    Idempotent by ``reference`` among the wallet's grants: a repeat returns the
    first entry; a repeat with a different amount raises ``ReferenceConflictError``.
    Atomic; takes the wallet's row lock.
    """
    _check_amount(amount)
    _check_reference(reference)
    now = _now(now)
    wallet = _lock_wallet(account=account, create=True)
    assert wallet is not None
    existing = LedgerEntry.objects.filter(wallet=wallet, type=EntryType.GRANT, reference=reference).first()
    if existing is not None:
        if existing.amount != amount:
            raise _conflict("Grant", reference, "amount", existing.amount, amount)
        return existing
    line = _Line(EntryType.GRANT, amount, reference, description=description)
    (entry,) = _post(wallet=wallet, lines=[line], actor=_actor(actor), now=now)
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


# --- reserve ------------------------------------------------------------------------------------


def credits_reserve(
    *,
    account: Any,
    amount: int,
    reference: str,
    actor: str = "",
    lease_seconds: int | None = None,
    now: datetime | None = None,
) -> Hold:
    """Hold ``amount`` credits for the work named by ``reference``; ``InsufficientCreditsError`` if unavailable.

    The hold lowers ``available`` (``held`` rises), not ``balance``. Its lease
    (``lease_seconds``, default ``HOLD_LEASE_SECONDS``) must cover the time the
    work may wait in a queue; running work renews it (``credits_hold_renew``).

    Idempotent by ``reference`` (unique per wallet): a repeat returns the
    existing hold, whatever its state; a repeat with a different amount raises
    ``ReferenceConflictError``. Atomic: on PostgreSQL the reservation is one
    statement (atomic by itself; in a caller's transaction it runs under a
    savepoint), elsewhere one transaction under the wallet's row lock.
    """
    _check_amount(amount)
    _check_reference(reference)
    now = _now(now)
    lease = billing_settings.HOLD_LEASE_SECONDS if lease_seconds is None else lease_seconds
    _check_amount(lease, param="lease_seconds")
    expires = now + timedelta(seconds=lease)
    if connection.vendor == "postgresql":
        hold = _reserve_single_statement(
            account=account, amount=amount, reference=reference, actor=_actor(actor), now=now, expires=expires
        )
    else:
        hold = _reserve_locked(
            account=account, amount=amount, reference=reference, actor=_actor(actor), now=now, expires=expires
        )
    if hold.amount != amount:
        raise _conflict("Reservation", reference, "amount", hold.amount, amount)
    return hold


def _account_pk(account: Any) -> Any:
    return account.pk if hasattr(account, "pk") else account


def _reserve_sql() -> str:
    wallet, hold, entry = Wallet._meta.db_table, Hold._meta.db_table, LedgerEntry._meta.db_table
    # All three parts run in one statement and one snapshot. The wallet UPDATE is the
    # guard (READ COMMITTED re-checks its WHERE on the newest row version after waiting
    # for the row lock); if it matches nothing, the INSERTs have no rows to insert. A
    # duplicate reference fails the hold INSERT's unique index and aborts the whole
    # statement, so a wallet is never charged for a hold that was not written.
    return f"""
        WITH w AS (
            UPDATE {wallet}
               SET held = held + %(amount)s, last_sequence = last_sequence + 1, updated_at = %(now)s
             WHERE account_id = %(account)s AND balance - held >= %(amount)s
         RETURNING id, balance, held, last_sequence
        ), h AS (
            INSERT INTO {hold} (public_id, wallet_id, reference, amount, state, usage, captured, overrun,
                                waived, refunded, lease_expires_at, lease_token, actor, created_at, resolved_at)
            SELECT %(hold_id)s, w.id, %(reference)s, %(amount)s, 'pending', NULL::bigint, 0, 0,
                   0, 0, %(expires)s, 0, %(actor)s, %(now)s, NULL::timestamptz
              FROM w
         RETURNING id, wallet_id
        ), e AS (
            INSERT INTO {entry} (public_id, wallet_id, sequence, type, amount, balance_delta, held_delta,
                                 balance_after, held_after, reference, hold_id, actor, description, created_at)
            SELECT %(entry_id)s, w.id, w.last_sequence, 'reserve', %(amount)s, 0, %(amount)s,
                   w.balance, w.held, %(reference)s, h.id, %(actor)s, '', %(now)s
              FROM w JOIN h ON h.wallet_id = w.id
        )
        SELECT h.id, h.wallet_id FROM h
    """


def _savepoint_if_in_transaction() -> contextlib.AbstractContextManager[Any]:
    # Outside a transaction the single statement is its own transaction (autocommit):
    # no BEGIN/COMMIT round trips while the wallet row is locked. Inside one, a
    # savepoint keeps a duplicate-reference error from aborting the caller's work.
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def _reserve_single_statement(
    *, account: Any, amount: int, reference: str, actor: str, now: datetime, expires: datetime
) -> Hold:
    params = {
        "amount": amount,
        "now": now,
        "account": _account_pk(account),
        "hold_id": new_hold_id(),
        "entry_id": new_entry_id(),
        "reference": reference,
        "expires": expires,
        "actor": actor,
    }
    row = None
    try:
        with _savepoint_if_in_transaction(), connection.cursor() as cursor:
            cursor.execute(_reserve_sql(), params)
            row = cursor.fetchone()
    except IntegrityError:
        existing = Hold.objects.filter(wallet__account=account, reference=reference).first()
        if existing is None:
            raise
        return existing
    if row is not None:
        hold = Hold(
            id=row[0],
            public_id=params["hold_id"],
            wallet_id=row[1],
            reference=reference,
            amount=amount,
            state=HoldState.PENDING,
            lease_expires_at=expires,
            actor=actor,
            created_at=now,
        )
        hold._state.adding = False
        hold._state.db = connection.alias
        return hold
    # Nothing matched: the wallet is short, missing, or this is a replay of a reservation
    # made earlier (the hold INSERT had no row to conflict with).
    existing = Hold.objects.filter(wallet__account=account, reference=reference).first()
    if existing is not None:
        return existing
    available = Wallet.objects.filter(account=account).values_list(F("balance") - F("held"), flat=True).first() or 0
    raise InsufficientCreditsError(
        f"Cannot reserve {amount} credits: {available} available.", requested=amount, available=available
    )


def _reserve_locked(*, account: Any, amount: int, reference: str, actor: str, now: datetime, expires: datetime) -> Hold:
    """The portable reservation: wallet row lock, then hold and entry (SQLite; any database)."""
    try:
        with transaction.atomic():
            wallet = _lock_wallet(account=account, create=False)
            existing = Hold.objects.filter(wallet=wallet, reference=reference).first() if wallet else None
            if existing is not None:
                return existing
            available = wallet.available if wallet else 0
            if wallet is None or available < amount:
                raise InsufficientCreditsError(
                    f"Cannot reserve {amount} credits: {available} available.", requested=amount, available=available
                )
            hold = Hold.objects.create(
                wallet=wallet,
                reference=reference,
                amount=amount,
                lease_expires_at=expires,
                actor=actor,
                created_at=now,
            )
            _post(wallet=wallet, lines=[_Line(EntryType.RESERVE, amount, reference, hold.pk)], actor=actor, now=now)
            return hold
    except IntegrityError:
        # Only reachable on a database whose lock did not serialise the duplicate.
        existing = Hold.objects.filter(wallet__account=account, reference=reference).first()
        if existing is None:
            raise
        return existing


# --- settle, release, expire, renew -------------------------------------------------------------


@transaction.atomic
def credits_settle(
    *,
    account: Any,
    reference: str,
    amount: int,
    actor: str = "",
    lease_token: int | None = None,
    now: datetime | None = None,
) -> Hold:
    """Charge ``amount`` (the actual usage) against the pending hold ``reference`` and release the rest.

    Captures ``min(amount, hold)``; the uncaptured remainder is returned as a
    ``release`` line in the same step. Usage above the hold follows
    ``OVERRUN_POLICY``: ``"cap"`` books the difference as a zero-effect ``waive``
    line; ``"available"`` charges it from the available balance as an
    ``overrun`` line, up to what is available, and waives the rest.

    Refused with ``StaleHoldError`` when the lease lapsed or ``lease_token`` was
    superseded (a late settle from a stale worker), ``HoldNotPendingError`` when
    the hold was released. A repeat with the same amount returns the settled
    hold; with another amount, ``ReferenceConflictError``. Atomic; locks the hold,
    then the wallet.
    """
    _check_amount(amount, minimum=0)
    _check_reference(reference)
    now = _now(now)
    hold = _lock_hold(account=account, reference=reference)
    if hold.state == HoldState.SETTLED:
        if hold.usage != amount:
            raise _conflict("Settlement of", reference, "amount", hold.usage, amount)
        return hold
    if hold.state != HoldState.PENDING:
        raise _not_pending(hold, "settle")
    _check_lease(hold, lease_token=lease_token, now=now, action="settle")
    wallet = _lock_wallet_by_id(hold.wallet_id)

    captured = min(amount, hold.amount)
    remainder = hold.amount - captured
    excess = amount - captured
    overrun = 0
    if excess:
        policy = billing_settings.OVERRUN_POLICY
        if policy not in OVERRUN_POLICIES:
            raise ImproperlyConfigured(f"RIVYA_BILLING['OVERRUN_POLICY'] must be one of {OVERRUN_POLICIES}: {policy!r}")
        if policy == "available":
            # What will be available once this hold is settled: the remainder comes back.
            overrun = min(excess, wallet.available + remainder)
    waived = excess - overrun

    lines = [
        _Line(line_type, line_amount, reference, hold.pk)
        for line_type, line_amount in (
            (EntryType.SETTLE, captured),
            (EntryType.RELEASE, remainder),
            (EntryType.OVERRUN, overrun),
            (EntryType.WAIVE, waived),
        )
        if line_amount > 0
    ]
    _post(wallet=wallet, lines=lines, actor=_actor(actor), now=now)
    _resolve_hold(
        hold,
        state=HoldState.SETTLED,
        usage=amount,
        captured=captured,
        overrun=overrun,
        waived=waived,
        resolved_at=now,
    )
    return hold


@transaction.atomic
def credits_release(
    *,
    account: Any,
    reference: str,
    actor: str = "",
    lease_token: int | None = None,
    now: datetime | None = None,
) -> Hold:
    """Return the whole pending hold ``reference`` to ``available`` (the work failed or was canceled).

    Works after the lease lapsed too (the result is what the sweeper would do).
    A repeat returns the released hold; a settled or expired hold raises
    ``HoldNotPendingError`` (``StaleHoldError`` for expired) with its ``state``.
    Atomic; locks the hold, then the wallet.
    """
    _check_reference(reference)
    now = _now(now)
    hold = _lock_hold(account=account, reference=reference)
    if hold.state == HoldState.RELEASED:
        return hold
    if hold.state != HoldState.PENDING:
        raise _not_pending(hold, "release")
    if lease_token is not None and lease_token != hold.lease_token:
        raise StaleHoldError(
            f"Cannot release hold {reference!r}: lease token {lease_token} was superseded by {hold.lease_token}.",
            state=hold.state,
        )
    wallet = _lock_wallet_by_id(hold.wallet_id)
    line = _Line(EntryType.RELEASE, hold.amount, reference, hold.pk)
    _post(wallet=wallet, lines=[line], actor=_actor(actor), now=now)
    _resolve_hold(hold, state=HoldState.RELEASED, resolved_at=now)
    return hold


def _expire_locked(hold: Hold, *, now: datetime, actor: str) -> None:
    wallet = _lock_wallet_by_id(hold.wallet_id)
    _post(wallet=wallet, lines=[_Line(EntryType.EXPIRE, hold.amount, hold.reference, hold.pk)], actor=actor, now=now)
    _resolve_hold(hold, state=HoldState.EXPIRED, resolved_at=now)


@transaction.atomic
def credits_hold_expire(
    *, account: Any, reference: str, actor: str = "system:sweeper", now: datetime | None = None
) -> Hold:
    """Expire the pending hold ``reference`` whose lease lapsed at ``now``, returning its credits.

    ``HoldLeaseActiveError`` while the lease runs; a repeat returns the expired
    hold; a settled or released hold raises ``HoldNotPendingError``. Atomic;
    locks the hold, then the wallet.
    """
    _check_reference(reference)
    now = _now(now)
    hold = _lock_hold(account=account, reference=reference)
    if hold.state == HoldState.EXPIRED:
        return hold
    if hold.state != HoldState.PENDING:
        raise HoldNotPendingError(f"Cannot expire hold {reference!r}: it is already {hold.state}.", state=hold.state)
    if hold.lease_expires_at > now:
        raise HoldLeaseActiveError(
            f"Cannot expire hold {reference!r}: its lease runs until {hold.lease_expires_at.isoformat()}."
        )
    _expire_locked(hold, now=now, actor=_actor(actor))
    return hold


@transaction.atomic
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
    credits. Atomic; locks the hold only.
    """
    _check_reference(reference)
    now = _now(now)
    seconds = billing_settings.HOLD_RENEW_SECONDS if lease_seconds is None else lease_seconds
    _check_amount(seconds, param="lease_seconds")
    hold = _lock_hold(account=account, reference=reference)
    if hold.state != HoldState.PENDING:
        raise _not_pending(hold, "renew")
    _check_lease(hold, lease_token=lease_token, now=now, action="renew")
    hold.lease_expires_at = now + timedelta(seconds=seconds)
    if lease_token is None:
        hold.lease_token += 1
    Hold.objects.filter(pk=hold.pk).update(lease_expires_at=hold.lease_expires_at, lease_token=hold.lease_token)
    return hold


def credits_expire_lapsed_holds(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """The sweeper: expire pending holds whose lease lapsed at ``now``; returns how many it expired.

    Not one transaction: each hold is expired in its own short one, and a hold
    another transaction has locked (a settle in progress, another sweeper) is
    skipped (``SKIP LOCKED``) rather than waited for; the next sweep sees it
    again if it is still pending. Safe to run from several processes at once.
    """
    now = _now(now)
    batch_size = batch_size or billing_settings.EXPIRE_BATCH_SIZE
    due = list(
        Hold.objects.filter(state=HoldState.PENDING, lease_expires_at__lte=now)
        .order_by("lease_expires_at", "pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    expired = 0
    for pk in due:
        with transaction.atomic():
            hold = (
                Hold.objects.select_for_update(no_key=True, skip_locked=True)
                .filter(pk=pk, state=HoldState.PENDING, lease_expires_at__lte=now)
                .first()
            )
            if hold is None:
                continue
            _expire_locked(hold, now=now, actor="system:sweeper")
            expired += 1
    if expired:
        logger.info("Expired %s lapsed holds", expired)
    return expired


# --- refund --------------------------------------------------------------------------------------


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
