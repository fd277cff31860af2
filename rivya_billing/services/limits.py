"""Services of spend limits: set one, count holds against it, announce once per window that it was reached.

A ``SpendLimit`` caps what the holds reserved through it may take in one window
(``total``, or a UTC ``day`` or ``month``). The guard itself is part of the
reservation (``holds.credits_reserve(spend_limit=…)``): on PostgreSQL the same
statement that reserves from the wallet raises the limit's ``used`` only if it
stays within ``credits``; elsewhere the limit's row lock, taken before the
wallet's, serialises the same check. Settling below the hold and releasing give
the uncharged part back to the window the hold was counted in
(``limit_give_back``), never to a later one.

Billing knows nothing about what is limited: ``owner_ref`` is opaque.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from rivya_billing.exceptions import SpendLimitError, SpendLimitExceededError
from rivya_billing.models import TOTAL_WINDOW_START, Hold, HoldState, SpendLimit, SpendWindow

__all__ = [
    "spend_limit_exceeded_error",
    "spend_limit_get",
    "spend_limits_get",
    "spend_limit_mark_reached",
    "spend_limit_set",
    "spend_limit_usage",
    "spend_window_resets_at",
    "spend_window_start",
]


def spend_window_start(window: str, now: datetime) -> datetime:
    """The start (UTC) of the window of kind ``window`` that ``now`` falls in."""
    now = now.astimezone(UTC)
    if window == SpendWindow.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if window == SpendWindow.MONTH:
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return TOTAL_WINDOW_START


def spend_window_resets_at(window: str, start: datetime) -> datetime | None:
    """When the window starting at ``start`` ends (None: a ``total`` window never does)."""
    start = start.astimezone(UTC)
    if window == SpendWindow.DAY:
        return start + timedelta(days=1)
    if window == SpendWindow.MONTH:
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return None


def spend_limit_usage(limit: SpendLimit, *, now: datetime | None = None) -> tuple[int, datetime, datetime | None]:
    """``(used, window_start, resets_at)`` of the window ``now`` is in: 0 used if nothing counted in it yet."""
    now = now or timezone.now()
    current = spend_window_start(limit.window, now)
    if limit.window_start >= current:
        return limit.used, limit.window_start, spend_window_resets_at(limit.window, limit.window_start)
    return 0, current, spend_window_resets_at(limit.window, current)


def spend_limit_get(*, pk: int) -> SpendLimit | None:
    return SpendLimit.objects.filter(pk=pk).first()


def spend_limits_get(*, pks: Iterable[int]) -> list[SpendLimit]:
    """The limits with these ids (one query)."""
    pks = list(pks)
    return list(SpendLimit.objects.filter(pk__in=pks)) if pks else []


def _check(credits: int, window: str) -> None:
    if isinstance(credits, bool) or not isinstance(credits, int) or not 0 <= credits <= 2**62:
        raise SpendLimitError("credits must be an integer of at least 0.", param="credits")
    if window not in SpendWindow.values:
        raise SpendLimitError(f"window must be one of {', '.join(SpendWindow.values)}.", param="window")


@transaction.atomic
def spend_limit_set(*, owner_ref: str, credits: int, window: str, now: datetime | None = None) -> SpendLimit:
    """Create the limit of ``owner_ref``, or change its ``credits`` and ``window``; returns it.

    Changing ``credits`` keeps what was used. Changing ``window`` starts the new
    window afresh: ``used`` becomes what the limit's pending holds still hold, and
    those holds now count in the new window (so releasing them still gives back).
    Atomic; locks the limit row.
    """
    _check(credits, window)
    now = now or timezone.now()
    SpendLimit.objects.bulk_create(
        [SpendLimit(owner_ref=owner_ref, credits=credits, window=window, window_start=spend_window_start(window, now))],
        ignore_conflicts=True,
    )
    limit = SpendLimit.objects.select_for_update().get(owner_ref=owner_ref)
    fields = {"credits": credits, "updated_at": now}
    if limit.window != window:
        start = spend_window_start(window, now)
        pending = Hold.objects.filter(spend_limit=limit, state=HoldState.PENDING)
        held = pending.aggregate(total=Sum("amount"))["total"] or 0
        pending.update(spend_window_start=start)
        fields.update(window=window, window_start=start, used=held, reached_window_start=None)
    SpendLimit.objects.filter(pk=limit.pk).update(**fields)
    limit.refresh_from_db()
    return limit


def spend_limit_mark_reached(*, pk: int, window_start: datetime) -> bool:
    """Record that the limit was reached in the window starting at ``window_start``.

    True only for the first call per window (a conditional UPDATE, so concurrent
    callers cannot both win): the caller announces the event then, once.
    """
    updated = (
        SpendLimit.objects.filter(pk=pk)
        .filter(Q(reached_window_start__isnull=True) | Q(reached_window_start__lt=window_start))
        .update(reached_window_start=window_start)
    )
    return bool(updated)


def spend_limit_exceeded_error(limit: SpendLimit, *, requested: int, now: datetime) -> SpendLimitExceededError:
    """The error of a reservation of ``requested`` the limit refused, with its figures for the message."""
    used, start, resets_at = spend_limit_usage(limit, now=now)
    per = {"total": "in total", "day": "per day (UTC)", "month": "per month (UTC)"}[limit.window]
    resets = f"it resets at {resets_at.isoformat().replace('+00:00', 'Z')}" if resets_at else "it does not reset"
    return SpendLimitExceededError(
        f"Credit limit reached: {used} of {limit.credits} credits {per} used, {requested} more requested; {resets}.",
        limit_id=limit.pk,
        owner_ref=limit.owner_ref,
        credits=limit.credits,
        used=used,
        requested=requested,
        window=limit.window,
        window_start=start,
        resets_at=resets_at,
    )


def limit_give_back(hold: Hold, amount: int) -> None:
    """Stop counting ``amount`` of a limited hold (released or not charged), in the window it was counted in.

    Runs under the hold's row lock (before the wallet's); a window that has since
    reset is left alone.
    """
    if hold.spend_limit_id is None or amount <= 0:
        return
    SpendLimit.objects.filter(pk=hold.spend_limit_id, window_start=hold.spend_window_start).update(
        used=F("used") - amount
    )


def limit_lock(hold: Hold) -> None:
    """Lock a limited hold's limit row (after the hold, before the wallet), so later updates cannot wait on it."""
    if hold.spend_limit_id is not None:
        list(SpendLimit.objects.select_for_update(no_key=True).filter(pk=hold.spend_limit_id).values_list("pk"))


def limit_count_more(hold: Hold, amount: int) -> None:
    """Count an overrun (charged above the hold) in the hold's window: spending the limit did not guard."""
    if hold.spend_limit_id is None or amount <= 0:
        return
    SpendLimit.objects.filter(pk=hold.spend_limit_id, window_start=hold.spend_window_start).update(
        used=F("used") + amount
    )
