"""Selectors of the credit ledger: reads of wallets, entries and holds, and the reconciliation.

``wallet_reconcile`` is the audit behind ``manage.py rivya_ledger_check`` and
the admin's reconciliation status: it replays a wallet's entries in one
consistent snapshot (REPEATABLE READ on PostgreSQL) and reports every way the
stored totals, sequences and holds disagree with the entries.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from rivya_billing import fastpath
from rivya_billing.conf import billing_settings
from rivya_billing.models import (
    CreditGrant,
    EntryType,
    Hold,
    HoldState,
    LedgerEntry,
    SpendLimit,
    Wallet,
    entry_effect,
)

__all__ = [
    "WalletCheck",
    "credits_available",
    "hold_get",
    "ledger_check",
    "wallet_activity",
    "wallet_entries",
    "wallet_expiring",
    "wallet_get",
    "wallet_holds",
    "wallet_reconcile",
]


def wallet_get(*, account: Any) -> Wallet:
    """The account's wallet; an unsaved empty one (all zeros) if it has never had credits."""
    if billing_settings.WALLET_GET_COMPILED:  # GET /api/v1/credits: see rivya_billing.fastpath
        wallet = fastpath.wallet_load(account)
        if wallet is not None:
            return wallet
        return Wallet(account=account) if hasattr(account, "_meta") else Wallet(account_id=account)
    # get(), not first(): one wallet per account, and first()'s ORDER BY doubles the query's compile time.
    try:
        return Wallet.objects.get(account=account)
    except Wallet.DoesNotExist:
        return Wallet(account=account) if hasattr(account, "_meta") else Wallet(account_id=account)


def credits_available(*, account: Any) -> int:
    """What the account could reserve now (balance less held; 0 without a wallet).

    A read, not a promise: only ``credits_reserve`` decides, under the wallet's
    lock. For a cheap refusal before costlier work.
    """
    if billing_settings.AVAILABLE_SQL:  # on a chat turn's path: see rivya_billing.fastpath
        return fastpath.available(account)
    rows = Wallet.objects.filter(account=account).values_list(F("balance") - F("held"), flat=True)[:1]
    return next(iter(rows), 0)


def wallet_entries(
    *,
    account: Any,
    type: str | Iterable[str] | None = None,
    reference: str | None = None,
    work: Iterable[str] | None = None,
) -> QuerySet[LedgerEntry]:
    """The account's ledger entries, newest first, optionally of some types, one reference, or some work.

    ``reference`` matches the entry's own reference exactly. ``work`` takes the
    references of pieces of work and matches their entries by their own reference
    or their hold's, so a refund of a charge (which has a reference of its own)
    shows with the work it refunds; an empty ``work`` matches nothing.
    """
    entries = LedgerEntry.objects.filter(wallet__account=account)
    if type:
        entries = entries.filter(type=type) if isinstance(type, str) else entries.filter(type__in=list(type))
    if reference:
        entries = entries.filter(reference=reference)
    if work is not None:
        references = list(work)
        holds = Hold.objects.filter(wallet__account=account, reference__in=references).values("pk")
        entries = entries.filter(Q(reference__in=references) | Q(hold_id__in=holds))
    return entries.select_related("hold").order_by("-sequence")


def hold_get(*, account: Any, reference: str) -> Hold | None:
    """The account's hold for ``reference``, or None."""
    return Hold.objects.filter(wallet__account=account, reference=reference).first()


def wallet_holds(*, account: Any, state: str | None = None) -> QuerySet[Hold]:
    holds = Hold.objects.filter(wallet__account=account)
    if state:
        holds = holds.filter(state=state)
    return holds.order_by("-created_at", "-pk")


def wallet_activity(*, account: Any, since: datetime | None = None) -> dict[str, Any]:
    """Totals of the account's entries since ``since`` (default: ``ACTIVITY_WINDOW_DAYS`` ago).

    ``charged`` is what work took from the balance (settle + overrun),
    ``released`` what holds gave back uncharged (release, and expire of a hold),
    ``expired`` what left the wallet at a grant's expiry (expire without a hold),
    ``adjusted`` the net of admin adjustments.
    """
    if since is None:
        since = timezone.now() - timedelta(days=billing_settings.ACTIVITY_WINDOW_DAYS)
    rows = (
        LedgerEntry.objects.filter(wallet__account=account, created_at__gte=since)
        .values("type")
        .annotate(
            total=Sum("amount"),
            net=Sum("balance_delta"),
            count=Count("id"),
            # An expire line without a hold is a grant's expiry (balance -amount).
            grant_expired=Sum("amount", filter=Q(type=EntryType.EXPIRE, hold__isnull=True)),
        )
        .order_by()
    )
    by_type = {row["type"]: row for row in rows}
    grant_expired = (by_type[EntryType.EXPIRE]["grant_expired"] or 0) if EntryType.EXPIRE in by_type else 0

    def total(*types: str) -> int:
        return sum(by_type[t]["total"] for t in types if t in by_type)

    return {
        "since": since,
        "granted": total(EntryType.GRANT),
        "reserved": total(EntryType.RESERVE),
        "charged": total(EntryType.SETTLE, EntryType.OVERRUN),
        "released": total(EntryType.RELEASE, EntryType.EXPIRE) - grant_expired,
        "expired": grant_expired,
        "refunded": total(EntryType.REFUND),
        "adjusted": by_type[EntryType.ADJUST]["net"] if EntryType.ADJUST in by_type else 0,
        "entries": sum(row["count"] for row in by_type.values()),
    }


def wallet_expiring(*, account: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The account's expiring grants with credits left, soonest first: ``[{"credits", "expires_at"}]``.

    ``credits`` is what is left of the grant (not spent, not expired); part of it may be held
    by work in progress, which its settle will draw first. An ``expires_at`` in the past means
    the rest is held and expires when released (see ``GRANT_EXPIRY_NOTE``).
    """
    rows = (
        CreditGrant.objects.filter(wallet__account=account, remaining__gt=0)
        .order_by("expires_at", "pk")
        .values_list("remaining", "expires_at")[:limit]
    )
    return [{"credits": remaining, "expires_at": expires_at} for remaining, expires_at in rows]


# --- reconciliation --------------------------------------------------------------------------

MAX_PROBLEMS_PER_WALLET = 50


@dataclass
class WalletCheck:
    """The result of replaying one wallet's ledger."""

    wallet_id: int
    account_id: Any
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS_PER_WALLET:
            self.problems.append(problem)
        elif len(self.problems) == MAX_PROBLEMS_PER_WALLET:
            self.problems.append("… more problems not shown")


@contextlib.contextmanager
def _consistent_snapshot(wallet_id: int) -> Iterator[None]:
    """Read one wallet as of one instant, while work keeps settling on a live system."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        # One snapshot for every statement of the transaction; read only, so it never blocks writers.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    elif connection.vendor == "postgresql":
        # Inside a caller's transaction the isolation level is fixed already: hold the
        # wallet's row in share mode instead, so no writer of this wallet commits meanwhile.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {Wallet._meta.db_table} WHERE id = %s FOR SHARE", [wallet_id])
            yield
    else:
        # SQLite: the IMMEDIATE transaction holds the write lock, so writers wait for us.
        with transaction.atomic():
            yield


def _expected_hold_lines(amount: int, state: str, captured: int, overrun: int, waived: int) -> dict[str, int]:
    lines = {EntryType.RESERVE.value: amount}
    if state == HoldState.SETTLED:
        lines.update(
            {
                EntryType.SETTLE.value: captured,
                EntryType.RELEASE.value: amount - captured,
                EntryType.OVERRUN.value: overrun,
                EntryType.WAIVE.value: waived,
            }
        )
    elif state == HoldState.RELEASED:
        lines[EntryType.RELEASE.value] = amount
    elif state == HoldState.EXPIRED:
        lines[EntryType.EXPIRE.value] = amount
    return {k: v for k, v in lines.items() if v}


@dataclass
class _Replay:
    """What replaying a wallet's entries has added up so far."""

    grants: dict[str, tuple[Any, ...]]  # reference -> the stored bucket's row
    buckets: dict[str, list[int]] = field(default_factory=dict)  # reference -> [granted, remaining, drawn, expired]
    balance: int = 0
    held: int = 0
    next_sequence: int = 1
    lines: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    refunds: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    order: list[tuple[Any, ...]] = field(init=False)  # the stored buckets as spending draws them

    def __post_init__(self) -> None:
        self.order = sorted(self.grants.values(), key=lambda row: (row[6], row[0]))  # soonest expiry first


ENTRY_COLUMNS = (
    "sequence",
    "public_id",
    "type",
    "amount",
    "balance_delta",
    "held_delta",
    "balance_after",
    "held_after",
    "hold_id",
    "reference",
)
GRANT_COLUMNS = ("pk", "reference", "amount", "remaining", "drawn", "expired", "expires_at")
HOLD_COLUMNS = ("pk", "public_id", "amount", "state", "captured", "overrun", "waived", "refunded")


def wallet_reconcile(*, wallet_id: int) -> WalletCheck:
    """Replay one wallet's entries and compare them with everything stored about it.

    Checks: sequences run 1..n without gaps or repeats and end at the wallet's
    ``last_sequence``; each entry's deltas match its type and amount; each
    entry's recorded balance and held equal the replay; the replay ends at the
    wallet's balance and held; nothing is ever negative and held never exceeds
    the balance; held equals the sum of pending holds; every hold has exactly
    the lines its state implies; refunds match and never exceed the charge;
    each expiring grant's bucket equals its replay along the ledger (its grant
    entry, what spending drew from it soonest expiry first, its ``expire``
    entries) and what the buckets have left never exceeds the balance.
    Read-only; one consistent snapshot.
    """
    with _consistent_snapshot(wallet_id):
        wallet = Wallet.objects.get(pk=wallet_id)
        check = WalletCheck(wallet_id=wallet.pk, account_id=wallet.account_id)
        if wallet.held < 0 or wallet.balance < wallet.held:
            check.add(f"wallet totals out of range: balance {wallet.balance}, held {wallet.held}")
        grants = CreditGrant.objects.filter(wallet_id=wallet.pk).values_list(*GRANT_COLUMNS)
        replay = _Replay(grants={row[1]: row for row in grants})
        entries = LedgerEntry.objects.filter(wallet_id=wallet.pk).order_by("sequence", "pk")
        for row in entries.values_list(*ENTRY_COLUMNS).iterator(chunk_size=2000):
            check.entries += 1
            _replay_entry(check, replay, *row)
        _check_totals(check, wallet, replay)
        _check_holds(check, wallet, replay)
        _check_grants(check, wallet, replay)
        for hold_id in sorted(set(replay.lines) | set(replay.refunds)):
            check.add(f"entries reference hold id {hold_id}, which is not a hold of this wallet")
        return check


def _effect_ok(entry_type: str, amount: int, balance_delta: int, held_delta: int, has_hold: bool) -> bool:
    if amount <= 0:
        return False
    if entry_type == EntryType.ADJUST:
        return held_delta == 0 and abs(balance_delta) == amount
    effect = entry_effect(entry_type, has_hold=has_hold)
    return effect is not None and (balance_delta, held_delta) == (effect[0] * amount, effect[1] * amount)


def _replay_entry(
    check: WalletCheck,
    replay: _Replay,
    seq: int,
    public_id: str,
    entry_type: str,
    amount: int,
    balance_delta: int,
    held_delta: int,
    balance_after: int,
    held_after: int,
    hold_id: int | None,
    reference: str,
) -> None:
    entry = f"entry #{seq} ({public_id})"
    if seq != replay.next_sequence:
        check.add(f"sequence broken at entry {public_id}: expected #{replay.next_sequence}, found #{seq}")
    replay.next_sequence = seq + 1
    if not _effect_ok(entry_type, amount, balance_delta, held_delta, hold_id is not None):
        check.add(f"{entry} {entry_type} {amount} has deltas balance {balance_delta:+d}, held {held_delta:+d}")
    _replay_buckets(check, replay, entry, entry_type, amount, balance_delta, hold_id, reference)
    replay.balance += balance_delta
    replay.held += held_delta
    balance, held = replay.balance, replay.held
    if (balance_after, held_after) != (balance, held):
        check.add(
            f"{entry} records balance {balance_after}, held {held_after}; replay gives balance {balance}, held {held}"
        )
    if held < 0 or balance < held:
        check.add(f"after {entry} balance {balance}, held {held} is negative or overdrawn")
    if hold_id is not None and entry_type == EntryType.REFUND:
        replay.refunds[hold_id] += amount
    elif hold_id is not None:
        replay.lines[hold_id][entry_type] += amount


def _replay_buckets(
    check: WalletCheck,
    replay: _Replay,
    entry: str,
    entry_type: str,
    amount: int,
    balance_delta: int,
    hold_id: int | None,
    reference: str,
) -> None:
    """One entry's effect on the expiring grants' buckets (``GRANT_EXPIRY_NOTE``)."""
    if entry_type == EntryType.GRANT and reference in replay.grants:
        replay.buckets[reference] = [amount, amount, 0, 0]
    elif entry_type == EntryType.EXPIRE and hold_id is None:
        bucket = replay.buckets.get(reference)
        if bucket is None or bucket[1] < amount:
            check.add(f"{entry} expires {amount} of grant {reference!r}, which has less left")
        else:
            bucket[1] -= amount
            bucket[3] += amount
    elif balance_delta < 0:
        spend = -balance_delta
        for row in replay.order:
            bucket = replay.buckets.get(row[1])
            if bucket is None or not spend:
                continue
            take = min(spend, bucket[1])
            bucket[1] -= take
            bucket[2] += take
            spend -= take


def _check_totals(check: WalletCheck, wallet: Wallet, replay: _Replay) -> None:
    last = replay.next_sequence - 1
    if last != wallet.last_sequence:
        check.add(f"last entry is #{last} but the wallet's last_sequence is {wallet.last_sequence}")
    if replay.balance != wallet.balance:
        check.add(f"balance {wallet.balance} but entries add up to {replay.balance}")
    if replay.held != wallet.held:
        check.add(f"held {wallet.held} but entries add up to {replay.held}")


def _check_holds(check: WalletCheck, wallet: Wallet, replay: _Replay) -> None:
    pending = 0
    holds = Hold.objects.filter(wallet_id=wallet.pk).values_list(*HOLD_COLUMNS)
    for pk, public_id, amount, state, captured, overrun, waived, refunded in holds.iterator(chunk_size=2000):
        if state == HoldState.PENDING:
            pending += amount
        expected = _expected_hold_lines(amount, state, captured, overrun, waived)
        found = {k: v for k, v in replay.lines.pop(pk, {}).items() if v}
        if found != expected:
            check.add(f"hold {public_id} ({state}, {amount}) has lines {found}, expected {expected}")
        if replay.refunds.pop(pk, 0) != refunded or refunded > captured + overrun:
            check.add(f"hold {public_id} records {refunded} refunded of {captured + overrun} charged")
    if wallet.held != pending:
        check.add(f"held {wallet.held} but pending holds add up to {pending}")


def _check_grants(check: WalletCheck, wallet: Wallet, replay: _Replay) -> None:
    left = 0
    for _pk, reference, amount, remaining, drawn, expired, _expires_at in replay.order:
        stored = [amount, remaining, drawn, expired]
        left += remaining
        if remaining + drawn + expired != amount or min(stored) < 0:
            check.add(f"grant {reference!r} records {stored} (amount, remaining, drawn, expired): parts do not add up")
        found = replay.buckets.get(reference)
        if found is None:
            check.add(f"grant {reference!r} has no grant entry")
        elif found != stored:
            check.add(
                f"grant {reference!r} records (amount, remaining, drawn, expired) {stored}; the ledger gives {found}"
            )
    if left > wallet.balance:
        check.add(f"expiring grants have {left} left but the balance is {wallet.balance}")


def ledger_check(*, wallet_ids: Iterable[int] | None = None) -> Iterator[WalletCheck]:
    """``wallet_reconcile`` for every wallet (or the given ones), each in its own snapshot."""
    ids = Wallet.objects.order_by("pk").values_list("pk", flat=True)
    if wallet_ids is not None:
        ids = ids.filter(pk__in=list(wallet_ids))
    for wallet_id in list(ids):
        yield wallet_reconcile(wallet_id=wallet_id)


def spend_limit_check() -> Iterator[tuple[SpendLimit, int]]:
    """Every spend limit whose ``used`` differs from what its holds say, with what they say.

    In the limit's current window: a pending hold counts in full, a settled one
    what it charged, a released or expired one nothing. One statement, so one
    snapshot on a live system.
    """
    counted = (
        Hold.objects.filter(spend_limit=OuterRef("pk"), spend_window_start=OuterRef("window_start"))
        .values("spend_limit")
        .annotate(
            total=Sum(
                Case(
                    When(state=HoldState.PENDING, then=F("amount")),
                    When(state=HoldState.SETTLED, then=F("captured") + F("overrun")),
                    default=Value(0),
                    output_field=BigIntegerField(),
                )
            )
        )
        .values("total")
    )
    limits = SpendLimit.objects.annotate(
        expected=Coalesce(Subquery(counted, output_field=BigIntegerField()), Value(0))
    ).exclude(used=F("expected"))
    for limit in limits.order_by("pk"):
        yield limit, limit.expected
