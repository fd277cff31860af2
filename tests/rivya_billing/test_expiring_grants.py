"""Expiring grants: drawn soonest expiry first; at expiry only what is neither spent nor held leaves.

The rules are ``rivya_billing.models.GRANT_EXPIRY_NOTE``; the state machine
(``test_state_machine.py``) mixes them with everything else, these pin worked examples,
and the concurrency test races the sweep against spending on PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from rivya_billing import selectors, services
from rivya_billing.exceptions import InsufficientCreditsError, InvalidAmountError, ReferenceConflictError
from rivya_billing.models import CreditGrant, LedgerEntry
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import T0, assert_ledger_clean, stress_repeats
from tests.rivya_billing.test_ledger_check import raw, run_check

DAY = timedelta(days=1)


def bucket(account, reference):
    g = CreditGrant.objects.get(wallet__account=account, reference=reference)
    return g.remaining, g.drawn, g.expired


def totals(account):
    wallet = selectors.wallet_get(account=account)
    return wallet.balance, wallet.held


@pytest.mark.django_db
def test_spending_draws_the_soonest_expiring_grant_first(make_account, now):
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="plain", now=now)
    services.credits_grant(account=account, amount=50, reference="late", expires_at=now + 30 * DAY, now=now)
    services.credits_grant(account=account, amount=40, reference="soon", expires_at=now + 7 * DAY, now=now)

    services.credits_reserve(account=account, amount=60, reference="task_1", now=now)
    assert bucket(account, "soon") == (40, 0, 0)  # a hold does not draw; its settle does
    services.credits_settle(account=account, reference="task_1", amount=60, now=now)
    assert bucket(account, "soon") == (0, 40, 0)
    assert bucket(account, "late") == (30, 20, 0)
    services.credits_adjust(account=account, amount=-35, reference="adj", reason="support", now=now)
    assert bucket(account, "late") == (0, 50, 0)
    assert totals(account) == (95, 0)  # the plain grant is untouched until the buckets are empty
    assert_ledger_clean()


@pytest.mark.django_db
def test_expiry_takes_what_is_left_and_never_what_is_held_or_plain(make_account, now):
    account = make_account()
    services.credits_grant(account=account, amount=50, reference="plain", now=now)
    services.credits_grant(account=account, amount=100, reference="promo", expires_at=now + DAY, now=now)
    services.credits_reserve(account=account, amount=60, reference="task_1", lease_seconds=5 * 86400, now=now)

    assert services.credits_expire_grants(now=now + DAY - timedelta(seconds=1)) == 0  # not due yet
    assert services.credits_expire_grants(now=now + DAY) == 40  # the 60 held count against the promo
    assert bucket(account, "promo") == (60, 0, 40)
    assert totals(account) == (110, 60)  # 50 plain + 60 held of the promo
    entry = LedgerEntry.objects.filter(wallet__account=account).latest("sequence")
    assert (entry.type, entry.amount, entry.balance_delta, entry.held_delta, entry.hold_id, entry.reference) == (
        "expire",
        40,
        -40,
        0,
        None,
        "promo",
    )
    assert services.credits_expire_grants(now=now + DAY) == 0  # still held: stays due, nothing posted
    assert LedgerEntry.objects.filter(wallet__account=account, type="expire").count() == 1

    services.credits_release(account=account, reference="task_1", now=now + DAY)
    assert services.credits_expire_grants(now=now + DAY) == 60  # released: the next sweep takes it
    assert totals(account) == (50, 0)
    assert bucket(account, "promo") == (0, 0, 100)
    assert_ledger_clean()


@pytest.mark.django_db
def test_a_settle_after_the_expiry_draws_the_held_rest(make_account, now):
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="promo", expires_at=now + DAY, now=now)
    services.credits_reserve(account=account, amount=30, reference="task_1", lease_seconds=3 * 86400, now=now)
    assert services.credits_expire_grants(now=now + DAY) == 70
    services.credits_settle(account=account, reference="task_1", amount=30, now=now + DAY)
    assert bucket(account, "promo") == (0, 30, 70)
    assert totals(account) == (0, 0)
    assert services.credits_expire_grants(now=now + 2 * DAY) == 0
    assert_ledger_clean()


@pytest.mark.django_db
def test_refunds_come_back_as_non_expiring_credits(make_account, now):
    account = make_account()
    services.credits_grant(account=account, amount=20, reference="promo", expires_at=now + DAY, now=now)
    services.credits_reserve(account=account, amount=20, reference="task_1", now=now)
    services.credits_settle(account=account, reference="task_1", amount=20, now=now)
    services.credits_refund(account=account, reference="r1", charge_reference="task_1", now=now)
    assert bucket(account, "promo") == (0, 20, 0)
    assert services.credits_expire_grants(now=now + DAY) == 0
    assert totals(account) == (20, 0)
    assert_ledger_clean()


@pytest.mark.django_db
def test_grant_expiry_is_validated_and_idempotent(make_account, now):
    account = make_account()
    with pytest.raises(InvalidAmountError) as error:
        services.credits_grant(account=account, amount=5, reference="g", expires_at=now, now=now)
    assert error.value.param == "expires_at"
    with pytest.raises(InvalidAmountError):
        services.credits_grant(account=account, amount=5, reference="g", expires_at=now.replace(tzinfo=None), now=now)
    first = services.credits_grant(account=account, amount=5, reference="g", expires_at=now + DAY, now=now)
    # A repeat returns the first grant even once the expiry is past.
    again = services.credits_grant(account=account, amount=5, reference="g", expires_at=now + DAY, now=now + 2 * DAY)
    assert again.pk == first.pk
    with pytest.raises(ReferenceConflictError) as conflict:
        services.credits_grant(account=account, amount=5, reference="g", expires_at=now + 2 * DAY, now=now)
    assert conflict.value.param == "expires_at"
    with pytest.raises(ReferenceConflictError):
        services.credits_grant(account=account, amount=5, reference="g", now=now)
    assert CreditGrant.objects.filter(wallet__account=account).count() == 1


@pytest.mark.django_db
def test_the_ledger_check_names_a_bucket_that_disagrees_with_the_ledger(make_account, now):
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="promo", expires_at=now + DAY, now=now)
    services.credits_reserve(account=account, amount=30, reference="task_1", now=now)
    services.credits_settle(account=account, reference="task_1", amount=30, now=now)
    assert run_check()[1] == ""
    # A bucket whose parts still add up but were not what the ledger did.
    raw("UPDATE rivya_billing_creditgrant SET remaining = remaining + 10, drawn = drawn - 10")
    problems = [p for check in selectors.ledger_check() for p in check.problems]
    assert any("grant 'promo' records (amount, remaining, drawn, expired) [100, 80, 20, 0]" in p for p in problems)


@pytest.mark.django_db
def test_the_sweep_runs_on_every_wallet_and_in_the_task(make_account):
    from django.utils import timezone

    from rivya_billing import tasks

    now = timezone.now() - 2 * DAY  # the task sweeps at the real clock
    accounts = [make_account() for _ in range(3)]
    for account in accounts:
        services.credits_grant(account=account, amount=10, reference="promo", expires_at=now + DAY, now=now)
    assert services.credits_expire_grants(now=now + DAY, batch_size=2) == 20  # the batch bounds one run
    assert tasks.credits_expire_grants.run() == 10  # the task sweeps the rest
    assert [totals(a) for a in accounts] == [(0, 0)] * 3
    with pytest.raises(InsufficientCreditsError):
        services.credits_reserve(account=accounts[0], amount=1, reference="t", now=now + DAY)


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
@pytest.mark.usefixtures("thread_connections")
def test_expiry_sweeps_racing_reserves_and_settles_never_overdraw(make_account, repeat):
    """Sweeps race 100 reserve+settle workers on one wallet with expiring and plain credits."""
    account = make_account()
    start = T0 - timedelta(days=3650)  # in the past of the real clock: leases are long, expiries due
    services.credits_grant(account=account, amount=150, reference="plain", now=start)
    for n, days in enumerate((1, 2, 3)):
        services.credits_grant(
            account=account, amount=100, reference=f"promo:{n}", expires_at=start + days * DAY, now=start
        )
    sweep_at = start + 3 * DAY

    def op(i: int):
        if i % 10 == 0:
            return ("sweep", services.credits_expire_grants(now=sweep_at))
        reference = f"task_{i}"
        services.credits_reserve(account=account, amount=7, reference=reference, lease_seconds=10**9, now=start)
        if i % 3 == 0:
            return ("release", services.credits_release(account=account, reference=reference, now=start).amount)
        return ("settle", services.credits_settle(account=account, reference=reference, amount=7, now=start).captured)

    run = run_concurrently(110, op)
    assert run.unexpected(InsufficientCreditsError) == []
    services.credits_expire_grants(now=sweep_at)  # whatever a release left due

    charged = sum(v for kind, v in run.winners() if kind == "settle")
    balance, held = totals(account)
    assert held == 0
    assert balance >= 0
    grants = CreditGrant.objects.filter(wallet__account=account)
    assert sum(g.remaining for g in grants) == 0  # every bucket is due: spent or expired
    expired = sum(g.expired for g in grants)
    # Non-expiring credits only ever pay for spending: they are what is left, less what spending took of them.
    assert balance == 450 - charged - expired
    assert balance == 150 - max(0, charged - sum(g.drawn for g in grants))
    assert_ledger_clean()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("balance_delta", "held_delta", "with_hold", "allowed"),
    [
        (-5, 0, False, True),  # a grant's expiry
        (0, -5, True, True),  # a hold's lapsed lease
        (0, -5, False, False),  # a lease expiry needs its hold
        (-5, 0, True, False),  # a hold's expire never lowers the balance
        (5, 0, False, False),
    ],
)
def test_the_database_admits_exactly_the_two_kinds_of_expire_line(
    make_account, now, balance_delta, held_delta, with_hold, allowed
):
    from django.db import IntegrityError, transaction

    from rivya_billing.models import Wallet

    account = make_account()
    services.credits_grant(account=account, amount=50, reference="g", now=now)
    hold = services.credits_reserve(account=account, amount=5, reference="t", now=now)
    wallet = Wallet.objects.get(account=account)
    entry = LedgerEntry(
        wallet=wallet,
        sequence=99,
        type="expire",
        amount=5,
        balance_delta=balance_delta,
        held_delta=held_delta,
        balance_after=45,
        held_after=0,
        reference="x",
        hold=hold if with_hold else None,
    )
    if allowed:
        with transaction.atomic():
            entry.save()
            transaction.set_rollback(True)
    else:
        with pytest.raises(IntegrityError), transaction.atomic():
            entry.save()
