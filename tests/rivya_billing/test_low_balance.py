"""The low-balance alert: one notice per crossing, decided with the wallet change, on every path.

Sequential scenarios run on every database (the trigger has a PostgreSQL and a SQLite
version); the concurrency tests run real threads on PostgreSQL and compare the notices with
a replay of the committed ledger: every crossing in the ledger has exactly one notice, at
the entry that crossed, and there is no other notice.
"""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_billing import services
from rivya_billing.exceptions import InsufficientCreditsError, InvalidAmountError
from rivya_billing.models import LedgerEntry, LowBalanceNotice, Wallet
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import assert_ledger_clean, stress_repeats

pytestmark = pytest.mark.django_db


def notices(account) -> list[tuple[int, int]]:
    return list(
        LowBalanceNotice.objects.filter(wallet__account=account).order_by("pk").values_list("available", "threshold")
    )


def armed(account) -> bool:
    return Wallet.objects.get(account=account).low_balance_armed


def funded(make_account, credits: int, threshold: int | None = None):
    account = make_account()
    services.credits_grant(account=account, amount=credits, reference="grant:initial")
    if threshold is not None:
        services.credits_alert_set(account=account, low_balance_threshold=threshold)
    return account


def expected_crossings(account, threshold: int) -> list[int]:
    """Replay the committed ledger: the sequence numbers at which available fell below ``threshold``
    while armed (armed again at ``>= threshold``). Valid for single-line operations (the tests' mix)."""
    is_armed, crossings = True, []
    rows = (
        LedgerEntry.objects.filter(wallet__account=account)
        .order_by("sequence")
        .values_list("sequence", "balance_after", "held_after")
    )
    for sequence, balance, held in rows:
        available = balance - held
        if is_armed and available < threshold:
            crossings.append(sequence)
            is_armed = False
        elif not is_armed and available >= threshold:
            is_armed = True
    return crossings


def test_spending_below_the_threshold_writes_one_notice_and_rearms_at_the_threshold(make_account):
    account = funded(make_account, 100, threshold=50)
    services.credits_reserve(account=account, amount=40, reference="a")  # 60 left: above
    assert notices(account) == []
    services.credits_reserve(account=account, amount=15, reference="b")  # 45: crosses
    services.credits_reserve(account=account, amount=5, reference="c")  # 40: still below, no second notice
    assert notices(account) == [(45, 50)]
    assert not armed(account)
    services.credits_release(account=account, reference="c")  # 45: below, stays disarmed
    services.credits_release(account=account, reference="b")  # 60: re-armed
    assert armed(account)
    services.credits_settle(account=account, reference="a", amount=40)  # settle: available unchanged
    assert armed(account)
    services.credits_reserve(account=account, amount=11, reference="d")  # 49: crosses again
    assert notices(account) == [(45, 50), (49, 50)]
    assert_ledger_clean()


def test_exactly_at_the_threshold_is_not_below(make_account):
    account = funded(make_account, 100, threshold=50)
    services.credits_reserve(account=account, amount=50, reference="a")
    assert notices(account) == []
    services.credits_adjust(account=account, amount=-1, reference="adj", reason="test")
    assert notices(account) == [(49, 50)]
    services.credits_grant(account=account, amount=1, reference="g2")  # back to 50: re-armed
    assert armed(account)


def test_every_kind_of_wallet_change_is_judged(make_account):
    account = funded(make_account, 100, threshold=50)
    services.credits_reserve(account=account, amount=30, reference="a")
    services.credits_settle(account=account, reference="a", amount=30)  # 70
    services.credits_adjust(account=account, amount=-25, reference="adj", reason="correction")  # 45: crosses
    assert notices(account) == [(45, 50)]
    services.credits_refund(account=account, reference="r", charge_reference="a")  # 75: re-armed
    assert armed(account)
    services.credits_reserve(account=account, amount=30, reference="b", lease_seconds=1)  # 45: crosses
    assert len(notices(account)) == 2
    services.credits_hold_expire(account=account, reference="b", now=timezone.now() + timedelta(seconds=5))
    assert armed(account)  # the lapsed hold came back: 75


def test_a_new_threshold_starts_armed_and_is_judged_at_once(make_account):
    account = funded(make_account, 100)
    services.credits_reserve(account=account, amount=70, reference="a")  # 30 available, no alert yet
    wallet = services.credits_alert_set(account=account, low_balance_threshold=50)
    assert notices(account) == [(30, 50)]
    assert wallet.low_balance_threshold == 50
    assert not wallet.low_balance_armed
    # The same threshold again changes nothing (no second notice, not re-armed).
    services.credits_alert_set(account=account, low_balance_threshold=50)
    assert len(notices(account)) == 1
    # Another threshold is a new alert: judged at once.
    services.credits_alert_set(account=account, low_balance_threshold=40)
    assert notices(account) == [(30, 50), (30, 40)]
    # Off: no notices whatever happens, and a later threshold starts armed.
    wallet = services.credits_alert_set(account=account, low_balance_threshold=None)
    assert wallet.low_balance_threshold is None
    assert wallet.low_balance_armed
    services.credits_reserve(account=account, amount=29, reference="b")
    assert len(notices(account)) == 2
    services.credits_alert_set(account=account, low_balance_threshold=5)  # 1 available: below at once
    assert notices(account)[-1] == (1, 5)


def test_a_threshold_on_an_account_without_wallet_creates_an_empty_one_and_fires(make_account):
    account = make_account()
    services.credits_alert_set(account=account, low_balance_threshold=10)
    assert notices(account) == [(0, 10)]


@pytest.mark.parametrize("value", [0, -5, True, 1.5, "10"])
def test_a_threshold_is_a_positive_integer_or_none(make_account, value):
    account = make_account()
    with pytest.raises(InvalidAmountError) as info:
        services.credits_alert_set(account=account, low_balance_threshold=value)
    assert info.value.param == "low_balance_threshold"


def test_a_refused_reservation_changes_nothing(make_account):
    account = funded(make_account, 100, threshold=50)
    with pytest.raises(InsufficientCreditsError):
        services.credits_reserve(account=account, amount=101, reference="a")
    assert notices(account) == []
    assert armed(account)


def test_the_publisher_hands_each_notice_over_once_and_retries_a_failed_one(make_account):
    first = funded(make_account, 100, threshold=50)
    second = funded(make_account, 100, threshold=50)
    services.credits_reserve(account=first, amount=60, reference="a")
    services.credits_reserve(account=second, amount=70, reference="a")
    seen: list[tuple[int, int]] = []

    def publish(notice: LowBalanceNotice) -> None:
        if notice.wallet.account == first and not seen:
            seen.append((-1, -1))
            raise RuntimeError("receiver down")
        seen.append((notice.wallet.account.pk, notice.available))

    assert services.credits_low_balance_notices_publish(publish=publish) == 1  # the first one failed
    assert services.credits_low_balance_notices_publish(publish=publish) == 1  # tried again
    assert services.credits_low_balance_notices_publish(publish=publish) == 0
    assert seen == [(-1, -1), (second.pk, 30), (first.pk, 40)]
    assert not LowBalanceNotice.objects.filter(published_at__isnull=True).exists()


# --- under concurrency (PostgreSQL) ----------------------------------------------------------------


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
@pytest.mark.usefixtures("thread_connections")
def test_200_concurrent_spends_cross_once(make_account, repeat):
    account = funded(make_account, 1000, threshold=500)

    run = run_concurrently(200, lambda i: services.credits_reserve(account=account, amount=7, reference=f"t{i}"))

    assert run.unexpected(InsufficientCreditsError) == []
    assert len(run.winners()) == 142  # 1000 // 7
    (notice,) = LowBalanceNotice.objects.filter(wallet__account=account)
    assert notice.threshold == 500
    assert 493 <= notice.available < 500
    assert [notice.sequence] == expected_crossings(account, 500)
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
@pytest.mark.usefixtures("thread_connections")
def test_concurrent_spends_and_returns_around_the_threshold_notice_every_crossing_once(make_account, repeat):
    """Threads reserve and release around the threshold, so available crosses it many times:
    the notices are exactly the crossings a replay of the committed ledger finds."""
    account = funded(make_account, 300, threshold=200)
    rng_lock = threading.Lock()
    rng = random.Random(repeat)

    def work(i: int) -> None:
        with rng_lock:
            amount = rng.randint(10, 60)
        try:
            services.credits_reserve(account=account, amount=amount, reference=f"t{i}")
        except InsufficientCreditsError:
            return
        if i % 3:
            services.credits_release(account=account, reference=f"t{i}")
        else:
            services.credits_settle(account=account, reference=f"t{i}", amount=amount)
            services.credits_grant(account=account, amount=amount, reference=f"g{i}")

    # 8 threads, so that at any moment only a few holds are open and available swings across 200
    # again and again (with 200 threads it would sink below once and stay there until the end).
    run = run_concurrently(400, work, threads=8)

    assert run.unexpected() == []
    crossings = expected_crossings(account, 200)
    found = list(LowBalanceNotice.objects.filter(wallet__account=account).order_by("sequence"))
    assert [n.sequence for n in found] == crossings
    assert len(crossings) > 1, "the mix should cross the threshold more than once"
    by_sequence = {
        seq: balance - held
        for seq, balance, held in LedgerEntry.objects.filter(wallet__account=account).values_list(
            "sequence", "balance_after", "held_after"
        )
    }
    assert all(n.available == by_sequence[n.sequence] < 200 for n in found)
    assert armed(account) == (Wallet.objects.get(account=account).available >= 200)
    assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.usefixtures("thread_connections")
def test_concurrent_publishers_hand_each_notice_over_once(make_account):
    accounts = [funded(make_account, 100, threshold=50) for _ in range(20)]
    for account in accounts:
        services.credits_reserve(account=account, amount=60, reference="a")
    handed: list[int] = []
    lock = threading.Lock()

    def publish(notice: LowBalanceNotice) -> None:
        with lock:
            handed.append(notice.pk)

    run = run_concurrently(8, lambda i: services.credits_low_balance_notices_publish(publish=publish))

    assert run.unexpected() == []
    assert sum(run.winners()) == 20
    assert sorted(handed) == sorted(LowBalanceNotice.objects.values_list("pk", flat=True))
