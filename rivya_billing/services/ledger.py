"""The posting primitives every ledger service uses: validation, row locks, posting lines.

Internal to ``rivya_billing.services``; callers use the ``credits_*`` functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.db.models.query_utils import check_rel_lookup_compatibility
from django.utils import timezone

from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import (
    HoldNotFoundError,
    HoldNotPendingError,
    InsufficientCreditsError,
    InvalidAmountError,
    InvalidReferenceError,
    LedgerConcurrencyError,
    ReferenceConflictError,
    StaleHoldError,
)
from rivya_billing.metrics import ledger_operation_observe
from rivya_billing.models import (
    CreditGrant,
    EntryType,
    Hold,
    HoldState,
    LedgerEntry,
    Wallet,
    entry_effect,
    new_entry_id,
)
from rivya_billing.services.durability import commit_early

MAX_AMOUNT = 2**63 - 1  # the largest amount a ledger column (bigint) holds


def _check_covered(wallet: Wallet | None, amount: int) -> None:
    """Refuse a reservation of ``amount`` that the wallet's available does not cover (or no wallet)."""
    available = wallet.available if wallet else 0
    if wallet is None or available < amount:
        raise InsufficientCreditsError(
            f"Cannot reserve {amount} credits: {available} available.", requested=amount, available=available
        )


def _check_amount(amount: Any, *, minimum: int = 1, param: str = "amount") -> int:
    # bool is an int subclass; True credits is a bug, not one credit.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidAmountError(f"{param} must be an integer, not {type(amount).__name__}.", param=param)
    if amount < minimum:
        raise InvalidAmountError(f"{param} must be at least {minimum}, not {amount}.", param=param)
    if amount > MAX_AMOUNT:  # the columns' bigint; the database would refuse it, each path in its own words
        raise InvalidAmountError(f"{param} must be at most {MAX_AMOUNT}, not {amount}.", param=param)
    return amount


def _check_reference(reference: Any, *, param: str = "reference") -> str:
    if not isinstance(reference, str) or not reference or len(reference) > 255:
        raise InvalidReferenceError(f"{param} must be a non-empty string of at most 255 characters.", param=param)
    return reference


def _actor(actor: Any) -> str:
    return str(actor or "")[:200]


def _reserve_arguments(
    account: Any, amount: int, reference: str, actor: str, lease_seconds: int | None, spend_limit: Any, now: Any
) -> dict[str, Any]:
    """A reservation's arguments, checked, with its lease's end (``holds._reserve``, ``pg_reserve._joined_params``)."""
    _check_amount(amount)
    _check_reference(reference)
    now = _now(now)
    lease = billing_settings.HOLD_LEASE_SECONDS if lease_seconds is None else lease_seconds
    expires = now + timedelta(seconds=_check_amount(lease, param="lease_seconds"))
    arguments = {"account": account, "amount": amount, "reference": reference, "actor": _actor(actor)}
    return arguments | {"now": now, "expires": expires, "spend_limit": spend_limit}


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
    """The account's wallet, row-locked for this transaction; created (empty) when asked.

    Every wallet write takes its lock here (or in ``_lock_wallet_by_id``), so this is
    where the transaction is set to release it early (``durability``), before locking.
    """
    commit_early()
    locked = Wallet.objects.select_for_update(no_key=True)
    wallet = locked.filter(account=account).first()
    if wallet is None and create:
        # ON CONFLICT DO NOTHING: two first grants racing both end up locking the one row.
        Wallet.objects.bulk_create([Wallet(account=account)], ignore_conflicts=True)
        wallet = locked.get(account=account)
    return wallet


def row_locks() -> bool:
    """Whether the database locks rows (``SELECT … FOR UPDATE``); SQLite does not: its ``IMMEDIATE``
    transaction holds the database's write lock from BEGIN, so whatever it reads is read under that lock."""
    return connection.features.has_select_for_update


def _lock_wallet_by_id(wallet_id: int) -> Wallet:
    commit_early()
    return Wallet.objects.select_for_update(no_key=True).get(pk=wallet_id)


def _lock_hold(*, account: Any, reference: str, param: str = "reference", wallet: bool = False) -> Hold:
    """The hold, row-locked (before its wallet: the one lock order every service uses).

    ``wallet``: its wallet comes in the same query (``hold.wallet``), for a caller on a database
    without row locks (``row_locks``), where the transaction's lock covers the wallet too.
    """
    locked = Hold.objects.select_for_update(no_key=True, of=("self",))
    if wallet:
        locked = locked.select_related("wallet")
    hold = locked.filter(wallet__account=account, reference=reference).first()
    if hold is None:
        raise _hold_not_found(reference, param=param)
    return hold


def _hold_not_found(reference: str, *, param: str = "reference") -> HoldNotFoundError:
    return HoldNotFoundError(f"No hold with reference {reference!r} in this wallet.", param=param)


# --- posting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    type: str
    amount: int
    reference: str
    hold_id: int | None = None
    sign: int = 1  # only ``adjust`` uses -1
    description: str = ""
    grant_id: int | None = None  # only the ``expire`` line of an expiring grant: its bucket, drawn by the caller


def _post(*, wallet: Wallet, lines: Sequence[_Line], actor: str, now: datetime) -> list[LedgerEntry]:
    """Append ``lines`` to the row-locked ``wallet`` and move its totals in the same transaction.

    The wallet UPDATE is guarded by the sequence number read under the lock, so a
    writer that slipped past the lock would make it fail instead of forking the
    ledger; the check constraints refuse any result with ``balance < held``.
    """
    entries, balance, held, sequence, spent = _entries(wallet=wallet, lines=lines, actor=actor, now=now)
    updated = Wallet.objects.filter(pk=wallet.pk, last_sequence=wallet.last_sequence).update(
        balance=F("balance") + (balance - wallet.balance),
        held=F("held") + (held - wallet.held),
        last_sequence=sequence,
        updated_at=now,
    )
    if updated != 1:
        raise LedgerConcurrencyError(f"Wallet {wallet.pk} changed under its row lock; nothing was posted.")
    LedgerEntry.objects.bulk_create(entries)
    if spent:
        _draw_grants(wallet_id=wallet.pk, spent=spent)
    wallet.balance, wallet.held, wallet.last_sequence, wallet.updated_at = balance, held, sequence, now
    # Counted once committed (a rolled-back operation never happened); robust, so a metrics
    # failure can never turn a committed ledger write into an error.
    transaction.on_commit(lambda: _observe(lines), robust=True)
    return entries


def _entries(
    *, wallet: Wallet, lines: Sequence[_Line], actor: str, now: datetime
) -> tuple[list[LedgerEntry], int, int, int, int]:
    """The entries ``lines`` append to ``wallet`` (unsaved), and its balance, held and last sequence
    after them, and what they spend (``_draw_grants``); shared by ``_post`` and ``sqlite_holds``."""
    balance, held, sequence = wallet.balance, wallet.held, wallet.last_sequence
    entries = []
    spent = 0
    for line in lines:
        if line.type == EntryType.ADJUST:
            balance_delta, held_delta = line.sign * line.amount, 0
        else:
            effect = entry_effect(line.type, has_hold=line.hold_id is not None)
            assert effect is not None, line.type
            balance_delta, held_delta = effect[0] * line.amount, effect[1] * line.amount
        if balance_delta < 0 and line.grant_id is None:
            spent -= balance_delta
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
    return entries, balance, held, sequence, spent


def _draw_grants(*, wallet_id: int, spent: int) -> None:
    """Take ``spent`` credits from the wallet's expiring grants, soonest expiry first (``GRANT_EXPIRY_NOTE``).

    Runs under the wallet's row lock (every writer of buckets holds it), so no bucket lock is
    needed. A wallet without expiring grants costs one probe of a partial index.
    """
    buckets = (
        CreditGrant.objects.filter(wallet_id=wallet_id, remaining__gt=0)
        .order_by("expires_at", "pk")
        .values_list("pk", "remaining")
    )
    for pk, remaining in buckets:
        take = min(spent, remaining)
        CreditGrant.objects.filter(pk=pk).update(remaining=F("remaining") - take, drawn=F("drawn") + take)
        spent -= take
        if not spent:
            break


def _observe(lines: Sequence[_Line]) -> None:
    for line in lines:
        ledger_operation_observe(operation=line.type, credits=line.amount)


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


def _settle_repeat(hold: Hold, *, amount: int, lease_token: int | None, now: datetime) -> bool:
    """Whether settling the locked ``hold`` at ``amount`` is a repeat (return the hold as it is).

    False: the settle goes ahead. Raises when it is refused: ``ReferenceConflictError`` for a
    repeat with another amount, ``HoldNotPendingError`` / ``StaleHoldError`` for a hold that
    was released or expired, whose lease lapsed or whose ``lease_token`` was superseded.
    """
    if hold.state == HoldState.SETTLED:
        if hold.usage != amount:
            raise _conflict("Settlement of", hold.reference, "amount", hold.usage, amount)
        return True
    if hold.state != HoldState.PENDING:
        raise _not_pending(hold, "settle")
    _check_lease(hold, lease_token=lease_token, now=now, action="settle")
    return False


def _settle_lines(hold: Hold, *, captured: int, overrun: int, waived: int) -> list[_Line]:
    """The lines that settle ``hold``: settle (captured), release (the rest), overrun, waive; none of 0."""
    parts = (
        (EntryType.SETTLE, captured),
        (EntryType.RELEASE, hold.amount - captured),
        (EntryType.OVERRUN, overrun),
        (EntryType.WAIVE, waived),
    )
    return [_Line(kind, part, hold.reference, hold.pk) for kind, part in parts if part]


def _account_pk(account: Any) -> Any:
    """The pk of ``account`` (an instance or its pk) for a statement built without the ORM's lookup.

    An instance of another model is refused as the ORM's ``wallet__account=`` lookup refuses it
    (``ValueError``), rather than its pk taken for an account's: a caller's wrong object (a user where
    the account is an organisation) must not reach whichever account has the same pk."""
    if not hasattr(account, "_meta"):
        return account
    field = Wallet._meta.get_field("account")
    opts = field.remote_field.model._meta
    if not check_rel_lookup_compatibility(account._meta.model, opts, field):
        raise ValueError(f'Cannot query "{account}": Must be "{opts.object_name}" instance.')
    return account.pk
