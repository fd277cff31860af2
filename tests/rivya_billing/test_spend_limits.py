"""Spend limits: counted with the reservation, given back on release, windows in UTC, on every database."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from rivya_billing import selectors, services
from rivya_billing.exceptions import InsufficientCreditsError, SpendLimitError, SpendLimitExceededError
from rivya_billing.models import Hold, SpendLimit
from tests.rivya_billing.conftest import assert_ledger_clean

pytestmark = pytest.mark.django_db

NOON = datetime(2030, 1, 31, 12, 0, tzinfo=UTC)


@pytest.fixture
def funded(make_account):
    account = make_account()
    services.credits_grant(account=account, amount=1000, reference="grant")
    return account


@pytest.fixture(params=["native", "portable"])
def reserve_path(request, rivya_settings):
    """Both reservation paths: the database's own (one statement on PostgreSQL) and the portable one."""
    rivya_settings("RIVYA_BILLING", PG_RESERVE=request.param == "native")
    return request.param


def limit_of(credits: int, window: str = "total", now: datetime = NOON) -> SpendLimit:
    return services.spend_limit_set(owner_ref=f"test:{credits}:{window}", credits=credits, window=window, now=now)


def reserve(account, amount, reference, limit, now=NOON):
    return services.credits_reserve(account=account, amount=amount, reference=reference, spend_limit=limit.pk, now=now)


def used(limit: SpendLimit) -> int:
    limit.refresh_from_db()
    return limit.used


def test_reservations_count_and_the_limit_refuses_past_it(funded, reserve_path):
    limit = limit_of(10)
    hold = reserve(funded, 6, "a", limit)
    assert hold.spend_limit_state[:2] == (6, 10)
    assert reserve(funded, 4, "b", limit).spend_limit_state[:2] == (10, 10)
    with pytest.raises(SpendLimitExceededError) as refused:
        reserve(funded, 1, "c", limit)
    error = refused.value
    assert (error.credits, error.used, error.requested, error.window, error.resets_at) == (10, 10, 1, "total", None)
    assert str(error) == "Credit limit reached: 10 of 10 credits in total used, 1 more requested; it does not reset."
    assert used(limit) == 10
    assert not Hold.objects.filter(reference="c").exists()
    assert selectors.wallet_get(account=funded).held == 10
    assert_ledger_clean()


def test_a_repeat_of_a_reference_counts_once(funded, reserve_path):
    limit = limit_of(10)
    first = reserve(funded, 6, "a", limit)
    assert reserve(funded, 6, "a", limit).pk == first.pk
    assert used(limit) == 6


def test_released_expired_and_unused_credits_stop_counting(funded, reserve_path):
    limit = limit_of(10)
    reserve(funded, 5, "released", limit)
    reserve(funded, 5, "settled", limit)
    services.credits_release(account=funded, reference="released", now=NOON)
    assert used(limit) == 5
    services.credits_settle(account=funded, reference="settled", amount=2, now=NOON)
    assert used(limit) == 2  # charged credits stay counted, the rest comes back
    reserve(funded, 8, "lapses", limit, now=NOON)
    services.credits_hold_expire(account=funded, reference="lapses", now=NOON + timedelta(days=2))
    assert used(limit) == 2
    assert_ledger_clean()


def test_the_wallet_still_guards_and_the_error_says_which(make_account, reserve_path):
    account = make_account()
    services.credits_grant(account=account, amount=3, reference="grant")
    limit = limit_of(10)
    with pytest.raises(InsufficientCreditsError):
        reserve(account, 5, "a", limit)
    assert used(limit) == 0


def test_a_day_window_resets_at_midnight_utc_and_late_releases_leave_the_new_day_alone(funded, reserve_path):
    limit = limit_of(10, "day")
    reserve(funded, 10, "yesterday", limit)
    with pytest.raises(SpendLimitExceededError) as refused:
        reserve(funded, 1, "x", limit)
    assert refused.value.resets_at == datetime(2030, 2, 1, tzinfo=UTC)
    tomorrow = datetime(2030, 2, 1, 0, 0, 1, tzinfo=UTC)
    assert reserve(funded, 7, "today", limit, now=tomorrow).spend_limit_state == (
        7,
        10,
        datetime(2030, 2, 1, tzinfo=UTC),
    )
    services.credits_release(account=funded, reference="yesterday", now=tomorrow)
    assert used(limit) == 7  # yesterday's hold counted yesterday
    assert_ledger_clean()


def test_month_windows_and_their_reset():
    assert services.spend_window_start("month", NOON) == datetime(2030, 1, 1, tzinfo=UTC)
    assert services.spend_window_resets_at("month", datetime(2030, 12, 1, tzinfo=UTC)) == datetime(
        2031, 1, 1, tzinfo=UTC
    )
    assert services.spend_window_resets_at("day", datetime(2030, 2, 28, tzinfo=UTC)) == datetime(2030, 3, 1, tzinfo=UTC)
    assert services.spend_window_start("total", NOON) == datetime(1970, 1, 1, tzinfo=UTC)


def test_changing_the_window_keeps_what_is_held(funded, reserve_path):
    limit = limit_of(10)
    reserve(funded, 3, "held", limit)
    reserve(funded, 4, "charged", limit)
    services.credits_settle(account=funded, reference="charged", amount=4, now=NOON)
    limit = services.spend_limit_set(owner_ref=limit.owner_ref, credits=5, window="day", now=NOON)
    assert (limit.used, limit.credits, limit.window) == (3, 5, "day")
    services.credits_release(account=funded, reference="held", now=NOON)
    assert used(limit) == 0
    assert_ledger_clean()


def test_invalid_limits_are_refused():
    with pytest.raises(SpendLimitError):
        services.spend_limit_set(owner_ref="x", credits=-1, window="day")
    with pytest.raises(SpendLimitError):
        services.spend_limit_set(owner_ref="x", credits=1, window="week")


def test_reached_is_marked_once_per_window(funded):
    limit = limit_of(1, "day")
    start = services.spend_window_start("day", NOON)
    assert services.spend_limit_mark_reached(pk=limit.pk, window_start=start) is True
    assert services.spend_limit_mark_reached(pk=limit.pk, window_start=start) is False
    assert services.spend_limit_mark_reached(pk=limit.pk, window_start=start + timedelta(days=1)) is True


def test_the_ledger_check_reports_a_drifted_limit(funded):
    limit = limit_of(10)
    reserve(funded, 3, "a", limit)
    assert list(selectors.spend_limit_check()) == []
    SpendLimit.objects.filter(pk=limit.pk).update(used=9)
    assert [(found.pk, expected) for found, expected in selectors.spend_limit_check()] == [(limit.pk, 3)]
    with pytest.raises(CommandError, match="Spend limit drift"):
        call_command("rivya_ledger_check", stdout=io.StringIO(), stderr=io.StringIO())
