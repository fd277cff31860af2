"""Services of holds: reserve, settle, release, expire, and the sweeper of lapsed leases (renew: ``leases``)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from rivya_billing.checks import OVERRUN_POLICIES
from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import (
    HoldLeaseActiveError,
    HoldNotPendingError,
    SpendLimitError,
    StaleHoldError,
)
from rivya_billing.metrics import sweep_row_failed
from rivya_billing.models import EntryType, Hold, HoldState, SpendLimit
from rivya_billing.services import pg_reserve, pg_settle, sqlite_holds
from rivya_billing.services.ledger import (
    _actor,
    _check_amount,
    _check_covered,
    _check_reference,
    _conflict,
    _Line,
    _lock_hold,
    _lock_wallet,
    _lock_wallet_by_id,
    _not_pending,
    _now,
    _post,
    _reserve_arguments,
    _resolve_hold,
    _settle_lines,
    _settle_repeat,
    row_locks,
)
from rivya_billing.services.limits import (
    limit_count_more,
    limit_give_back,
    limit_lock,
    spend_limit_exceeded_error,
    spend_limit_usage,
)

logger = logging.getLogger("rivya_billing.services")


__all__ = [
    "credits_expire_lapsed_holds",
    "credits_hold_expire",
    "credits_release",
    "credits_reserve",
    "credits_settle",
]


def credits_reserve(
    *,
    account: Any,
    amount: int,
    reference: str,
    actor: str = "",
    lease_seconds: int | None = None,
    spend_limit: int | None = None,
    now: datetime | None = None,
) -> Hold:
    """Hold ``amount`` credits for the work named by ``reference``; ``InsufficientCreditsError`` if unavailable.

    With ``spend_limit`` (a ``SpendLimit`` id), the hold also counts against that
    limit in the same atomic step: ``SpendLimitExceededError`` (and nothing
    reserved) if the limit's current window cannot take ``amount`` more. The
    returned hold then carries ``spend_limit_state``: ``(used, credits,
    window_start)`` of the limit just after this reservation.

    The hold lowers ``available`` (``held`` rises), not ``balance``. Its lease
    (``lease_seconds``, default ``HOLD_LEASE_SECONDS``) must cover the time the
    work may wait in a queue; running work renews it (``credits_hold_renew``).

    Idempotent by ``reference`` (unique per wallet): a repeat returns the
    existing hold, whatever its state; a repeat with a different amount raises
    ``ReferenceConflictError``. Atomic: on PostgreSQL the reservation is one
    statement (``pg_reserve``: atomic by itself; in a caller's transaction it runs
    under a savepoint), elsewhere one transaction under the wallet's row lock.
    """
    return _reserve(
        account=account,
        amount=amount,
        reference=reference,
        actor=actor,
        lease_seconds=lease_seconds,
        spend_limit=spend_limit,
        now=now,
    )


def _reserve_joined(
    *, account: Any, amount: int, reference: str, actor: str = "", spend_limit: int | None = None
) -> Hold:
    """``credits_reserve`` that takes no savepoint inside the caller's transaction (two round trips
    fewer on a chat turn's commit, on every path; see ``_joins``). Not public: only for a caller
    whose whole transaction any error of this call ends. On PostgreSQL its refusal for want of credits
    aborts that transaction, so its ``InsufficientCreditsError`` has ``available`` None: the caller
    reads it after its rollback."""
    return _reserve(
        account=account, amount=amount, reference=reference, actor=actor, spend_limit=spend_limit, joined=True
    )


def _reserve(
    *,
    account: Any,
    amount: int,
    reference: str,
    actor: str = "",
    lease_seconds: int | None = None,
    spend_limit: int | None = None,
    now: datetime | None = None,
    joined: bool = False,
) -> Hold:
    arguments = _reserve_arguments(account, amount, reference, actor, lease_seconds, spend_limit, now)
    if pg_reserve.enabled():
        hold = pg_reserve.reserve(**arguments, savepoint=not joined)
    else:
        hold = _reserve_locked(**arguments, joined=joined)
    if hold.amount != amount:
        raise _conflict("Reservation", reference, "amount", hold.amount, amount)
    return hold


def _limit_locked(spend_limit: int | None) -> SpendLimit | None:
    """The portable limit guard's lock: the limit row, locked before the wallet (``SpendLimitError`` if none)."""
    if spend_limit is None:
        return None
    limit = SpendLimit.objects.select_for_update().filter(pk=spend_limit).first()
    if limit is None:
        raise SpendLimitError(f"No spend limit {spend_limit}.", param="spend_limit")
    return limit


def _limit_window(limit: SpendLimit | None, *, amount: int, now: datetime) -> tuple[int, int, datetime] | None:
    """``(used, credits, window_start)`` of the locked ``limit`` once ``amount`` is counted; refuses
    (``SpendLimitExceededError``) if its window cannot take it. Writes nothing (``_limit_count`` does)."""
    if limit is None:
        return None
    used, start, _ = spend_limit_usage(limit, now=now)
    start = max(start, limit.window_start)
    if used + amount > limit.credits:
        raise spend_limit_exceeded_error(limit, requested=amount, now=now)
    return used + amount, limit.credits, start


def _limit_count(limit: SpendLimit | None, state: tuple[int, int, datetime] | None, *, now: datetime) -> None:
    if limit is not None and state is not None:
        SpendLimit.objects.filter(pk=limit.pk).update(used=state[0], window_start=state[2], updated_at=now)


def _joins(joined: bool) -> bool:
    """Whether a joined call (``_reserve_joined``, ``_settle_joined``) on the portable path runs in its
    caller's transaction with no savepoint: a refusal is raised before it writes anything, and that
    transaction, which any other error it raises ends, is its atomicity. Outside one it is its own."""
    return joined and transaction.get_connection().in_atomic_block


def _reserve_locked(*, joined: bool = False, **arguments: Any) -> Hold:
    """The portable reservation (SQLite; any database): a transaction (a savepoint in a caller's), or
    with ``joined`` the caller's transaction (``_joins``)."""
    if _joins(joined):
        return _reserve_rows(**arguments)
    try:
        with transaction.atomic():
            return _reserve_rows(**arguments)
    except IntegrityError:
        # Only reachable on a database whose lock did not serialise the duplicate.
        existing = Hold.objects.filter(wallet__account=arguments["account"], reference=arguments["reference"]).first()
        if existing is None:
            raise
        return existing


def _reserve_rows(
    *,
    account: Any,
    amount: int,
    reference: str,
    actor: str,
    now: datetime,
    expires: datetime,
    spend_limit: int | None = None,
) -> Hold:
    """Limit row lock, wallet row lock, then every refusal, then the writes (limit count, hold, entry).

    Nothing is written before the last refusal, so a caller of a joined reservation (no savepoint)
    that catches one can go on in its transaction; and a repeat found under the locks (a concurrent
    reservation of the same reference that committed while this one waited) counts nothing."""
    if spend_limit is None and sqlite_holds.reserves():  # the same rows, statements built once
        return sqlite_holds.reserve_rows(
            account=account, amount=amount, reference=reference, actor=actor, now=now, expires=expires
        )
    if spend_limit is not None:
        existing = Hold.objects.filter(wallet__account=account, reference=reference).first()
        if existing is not None:
            return existing
    limit = _limit_locked(spend_limit)
    wallet = _lock_wallet(account=account, create=False)
    existing = Hold.objects.filter(wallet=wallet, reference=reference).first() if wallet else None
    if existing is not None:
        return existing
    state = _limit_window(limit, amount=amount, now=now)
    _check_covered(wallet, amount)
    _limit_count(limit, state, now=now)
    hold = Hold.objects.create(
        wallet=wallet,
        reference=reference,
        amount=amount,
        lease_expires_at=expires,
        actor=actor,
        created_at=now,
        spend_limit_id=spend_limit,
        spend_window_start=state[2] if state else None,
    )
    _post(wallet=wallet, lines=[_Line(EntryType.RESERVE, amount, reference, hold.pk)], actor=actor, now=now)
    hold.spend_limit_state = state
    return hold


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

    The lines name ``actor``, by default the hold's (whoever reserved it), so
    every entry of one piece of work says who it was for.

    Refused with ``StaleHoldError`` when the lease lapsed or ``lease_token`` was
    superseded (a late settle from a stale worker), ``HoldNotPendingError`` when
    the hold was released. A repeat with the same amount returns the settled
    hold; with another amount, ``ReferenceConflictError``. Atomic; locks the hold,
    then the wallet. On PostgreSQL the settle is one statement (``pg_settle``: atomic
    by itself, in a savepoint inside a caller's transaction, as the plain path), elsewhere one
    transaction.

    """
    return _settle(account=account, reference=reference, amount=amount, actor=actor, lease_token=lease_token, now=now)


def _settle_joined(
    *,
    account: Any,
    reference: str,
    amount: int,
    actor: str = "",
    lease_token: int | None = None,
    now: datetime | None = None,
) -> Hold:
    """``credits_settle`` that takes no savepoint inside the caller's transaction (two round trips fewer
    on a chat turn's end and a generation's finish, on every path; see ``_joins``). Not public: only
    for a caller whose whole transaction any error of this call but a refusal ends; a refusal writes
    nothing and keeps the hold's row lock until that transaction ends."""
    return _settle(
        account=account, reference=reference, amount=amount, actor=actor, lease_token=lease_token, now=now, joined=True
    )


def _settle(
    *,
    account: Any,
    reference: str,
    amount: int,
    actor: str,
    lease_token: int | None,
    now: datetime | None,
    joined: bool = False,
) -> Hold:
    _check_amount(amount, minimum=0)
    _check_reference(reference)
    arguments = {"account": account, "reference": reference, "amount": amount, "actor": actor}
    arguments.update(lease_token=lease_token, now=_now(now))
    if pg_settle.enabled():
        return pg_settle.settle(**arguments, savepoint=not joined)
    if _joins(joined):
        return _settle_rows(**arguments)
    return _settle_locked(**arguments)


@transaction.atomic
def _settle_locked(**arguments: Any) -> Hold:
    """The portable settle (SQLite; any database) in a transaction, or a savepoint in a caller's."""
    return _settle_rows(**arguments)


def _settle_rows(
    *, account: Any, reference: str, amount: int, actor: str, lease_token: int | None, now: datetime
) -> Hold:
    """Hold, limit and wallet row locks, then the writes; a refusal is raised before any of them."""
    if sqlite_holds.enabled():  # the same rows, statements built once; None: a limited hold, the plain path
        arguments = {"account": account, "reference": reference, "amount": amount, "actor": actor}
        settled = sqlite_holds.settle_rows(**arguments, lease_token=lease_token, now=now)
        if settled is not None:
            return settled
    shared = not row_locks()  # SQLite: the wallet comes in the hold's query, under the transaction's lock
    hold = _lock_hold(account=account, reference=reference, wallet=shared)
    if _settle_repeat(hold, amount=amount, lease_token=lease_token, now=now):
        return hold
    limit_lock(hold)  # hold, limit, wallet: the order a reservation (limit, wallet) agrees with
    wallet = hold.wallet if shared else _lock_wallet_by_id(hold.wallet_id)
    captured, remainder, overrun, waived = _settle_split(hold, amount=amount, available=wallet.available)
    lines = _settle_lines(hold, captured=captured, overrun=overrun, waived=waived)
    limit_give_back(hold, remainder)
    limit_count_more(hold, overrun)
    _post(wallet=wallet, lines=lines, actor=_actor(actor or hold.actor), now=now)
    settled = {"usage": amount, "captured": captured, "overrun": overrun, "waived": waived}
    _resolve_hold(hold, state=HoldState.SETTLED, resolved_at=now, **settled)
    return hold


def _settle_split(hold: Hold, *, amount: int, available: int) -> tuple[int, int, int, int]:
    """(captured, remainder, overrun, waived) of settling ``hold`` at usage ``amount`` (``OVERRUN_POLICY``)."""
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
            overrun = min(excess, available + remainder)
    return captured, remainder, overrun, excess - overrun


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
    The line names ``actor``, by default the hold's.
    A repeat returns the released hold; a settled or expired hold raises
    ``HoldNotPendingError`` (``StaleHoldError`` for expired) with its ``state``.
    Atomic; locks the hold, then the wallet.
    """
    _check_reference(reference)
    now = _now(now)
    shared = not row_locks()  # SQLite: the wallet comes in the hold's query (as a settle's)
    hold = _lock_hold(account=account, reference=reference, wallet=shared)
    if hold.state == HoldState.RELEASED:
        return hold
    if hold.state != HoldState.PENDING:
        raise _not_pending(hold, "release")
    if lease_token is not None and lease_token != hold.lease_token:
        raise StaleHoldError(
            f"Cannot release hold {reference!r}: lease token {lease_token} was superseded by {hold.lease_token}.",
            state=hold.state,
        )
    limit_give_back(hold, hold.amount)
    wallet = hold.wallet if shared else _lock_wallet_by_id(hold.wallet_id)
    line = _Line(EntryType.RELEASE, hold.amount, reference, hold.pk)
    _post(wallet=wallet, lines=[line], actor=_actor(actor or hold.actor), now=now)
    _resolve_hold(hold, state=HoldState.RELEASED, resolved_at=now)
    return hold


def _expire_locked(hold: Hold, *, now: datetime, actor: str) -> None:
    limit_give_back(hold, hold.amount)
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
        try:
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
        except Exception:
            # One hold the sweep cannot expire must not keep it from the others (it is tried again next run).
            logger.exception("Could not expire lapsed hold %s; moving on to the next", pk)
            sweep_row_failed(job="expire_lapsed_holds")
    if expired:
        logger.info("Expired %s lapsed holds", expired)
    return expired
