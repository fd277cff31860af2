"""No spend limit is exceeded under a 200-thread burst: the key-limit acceptance numbers of issue 23.

Real threads on their own connections, released by one barrier
(``tests/rivya_billing/concurrency.py``), repeated ``RIVYA_STRESS_REPEATS`` times
(``make stress``: 20). After every run the ledger and every limit reconcile
(``rivya_ledger_check``, which checks each limit's ``used`` against its holds).
"""

from __future__ import annotations

import pytest
from django.db import connection

from rivya_billing import selectors, services
from rivya_billing.exceptions import InsufficientCreditsError, SpendLimitExceededError
from rivya_billing.models import Hold, SpendLimit
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import assert_ledger_clean, stress_repeats

pytestmark = [pytest.mark.usefixtures("thread_connections")]


def funded_account(make_account, credits: int):
    account = make_account()
    services.credits_grant(account=account, amount=credits, reference="grant:initial")
    return account


def pending_total(limit: SpendLimit) -> int:
    return sum(Hold.objects.filter(spend_limit=limit, state="pending").values_list("amount", flat=True))


@pytest.mark.parametrize(("amount", "expected_wins"), [(1, 50), (7, 7)])
@pytest.mark.parametrize("window", ["total", "day"])
@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_200_concurrent_reserves_through_one_limit_never_pass_it(make_account, amount, expected_wins, window, repeat):
    account = funded_account(make_account, 10_000)
    limit = services.spend_limit_set(owner_ref=f"api_key:key_{repeat}_{window}", credits=50, window=window)

    run = run_concurrently(
        200,
        lambda i: services.credits_reserve(
            account=account, amount=amount, reference=f"task_{i}", actor="key_burst", spend_limit=limit.pk
        ),
    )

    assert run.unexpected(SpendLimitExceededError) == []
    assert len(run.winners()) == expected_wins, (run.threads, run.errors())
    assert run.errors() == {"SpendLimitExceededError": 200 - expected_wins}
    limit.refresh_from_db()
    assert limit.used == amount * expected_wins <= limit.credits
    assert pending_total(limit) == limit.used
    assert selectors.wallet_get(account=account).held == limit.used
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_200_threads_reserving_and_releasing_keep_held_within_the_limit(make_account, repeat):
    """Half the threads release what they reserved: released credits come back, held ones never pass 30."""
    account = funded_account(make_account, 10_000)
    limit = services.spend_limit_set(owner_ref=f"api_key:churn_{repeat}", credits=30, window="total")

    def work(i: int) -> int:
        hold = services.credits_reserve(account=account, amount=3, reference=f"task_{i}", spend_limit=limit.pk)
        if i % 2:
            services.credits_release(account=account, reference=hold.reference)
        elif i % 4 == 0:
            services.credits_settle(account=account, reference=hold.reference, amount=1)
        used = SpendLimit.objects.get(pk=limit.pk).used
        assert used <= 30, used
        return used

    run = run_concurrently(200, work)

    assert run.unexpected(SpendLimitExceededError) == []
    limit.refresh_from_db()
    assert limit.used <= limit.credits
    settled = Hold.objects.filter(spend_limit=limit, state="settled")
    assert limit.used == pending_total(limit) + sum(hold.captured for hold in settled)
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_the_wallet_and_the_limit_both_hold_when_the_wallet_is_shorter(make_account, repeat):
    account = funded_account(make_account, 30)
    limit = services.spend_limit_set(owner_ref=f"api_key:short_{repeat}", credits=50, window="month")

    run = run_concurrently(
        200,
        lambda i: services.credits_reserve(account=account, amount=1, reference=f"task_{i}", spend_limit=limit.pk),
    )

    assert run.unexpected(InsufficientCreditsError) == []
    assert run.errors() == {"InsufficientCreditsError": 170}
    limit.refresh_from_db()
    assert limit.used == 30
    assert selectors.wallet_get(account=account).available == 0
    assert_ledger_clean()


def test_concurrent_limited_reserves_on_the_default_database(make_account):
    """Whatever the database (SQLite's IMMEDIATE transactions in the embedded default): the limit holds."""
    operations = 200 if connection.vendor == "postgresql" else 40
    account = funded_account(make_account, 10_000)
    limit = services.spend_limit_set(owner_ref="api_key:default_db", credits=operations // 4, window="day")

    run = run_concurrently(
        operations,
        lambda i: services.credits_reserve(account=account, amount=1, reference=f"task_{i}", spend_limit=limit.pk),
    )

    assert run.unexpected(SpendLimitExceededError) == []
    assert len(run.winners()) == operations // 4
    limit.refresh_from_db()
    assert limit.used == operations // 4
    assert_ledger_clean()
