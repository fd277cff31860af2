"""Worked examples: billing scenarios from start to finish, with the ledger each one leaves behind.

Each test reads as the story of one piece of work (a generation, a chat turn,
a dead worker, a dispute …), calls the services the API, a worker or the
Studio would call, and ends with the exact ledger lines a user would see when
reconciling the charge, plus a clean ``rivya_ledger_check``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from rivya_billing import selectors, services
from rivya_billing.exceptions import InsufficientCreditsError, RefundNotAllowedError, StaleHoldError
from tests.rivya_billing.conftest import assert_ledger_clean

pytestmark = pytest.mark.django_db

KEY = "key_worked_example"


def ledger(account, reference: str | None = None) -> list[tuple[str, int, int, int]]:
    """(type, amount, balance after, held after), oldest first."""
    entries = selectors.wallet_entries(account=account, reference=reference).order_by("sequence")
    return [(e.type, e.amount, e.balance_after, e.held_after) for e in entries]


def wallet(account) -> tuple[int, int, int]:
    w = selectors.wallet_get(account=account)
    return w.balance, w.held, w.available


@pytest.fixture
def customer(account, now):
    services.credits_grant(account=account, amount=1_000, reference="bootstrap", actor="user:admin", now=now)
    return account


def test_a_generation_that_succeeds_is_charged_its_quoted_price(customer, now):
    # POST /generations: the price (40) is reserved at acceptance.
    services.credits_reserve(account=customer, amount=40, reference="task_A", actor=KEY, now=now)
    assert wallet(customer) == (1_000, 40, 960)
    # A worker picks the task up and claims the hold; it renews while running.
    claim = services.credits_hold_renew(account=customer, reference="task_A", now=now + timedelta(seconds=5))
    services.credits_hold_renew(
        account=customer, reference="task_A", lease_token=claim.lease_token, now=now + timedelta(minutes=5)
    )
    # Success: exactly the quoted price.
    hold = services.credits_settle(
        account=customer,
        reference="task_A",
        amount=40,
        lease_token=claim.lease_token,
        actor="system:worker",
        now=now + timedelta(minutes=6),
    )
    assert (hold.captured, hold.released) == (40, 0)
    assert wallet(customer) == (960, 0, 960)
    assert ledger(customer, "task_A") == [("reserve", 40, 1_000, 40), ("settle", 40, 960, 0)]
    assert_ledger_clean()


def test_a_generation_that_fails_releases_its_hold_in_full(customer, now):
    services.credits_reserve(account=customer, amount=40, reference="task_B", actor=KEY, now=now)
    claim = services.credits_hold_renew(account=customer, reference="task_B", now=now)
    # The provider errors out: the task fails and the whole hold comes back.
    hold = services.credits_release(account=customer, reference="task_B", lease_token=claim.lease_token, now=now)
    assert (hold.state, hold.captured, hold.released) == ("released", 0, 40)
    assert wallet(customer) == (1_000, 0, 1_000)
    assert ledger(customer, "task_B") == [("reserve", 40, 1_000, 40), ("release", 40, 1_000, 0)]
    assert_ledger_clean()


def test_a_chat_turn_reserves_an_upper_bound_and_settles_its_usage(customer, now):
    # Before the model call: an upper bound from max_tokens (50 credits).
    services.credits_reserve(account=customer, amount=50, reference="msg_1", actor=KEY, now=now)
    # The assistant message is saved: 12.3 credits of tokens, rounded up to 13.
    hold = services.credits_settle(account=customer, reference="msg_1", amount=13, now=now)
    assert (hold.captured, hold.released) == (13, 37)
    assert ledger(customer, "msg_1") == [
        ("reserve", 50, 1_000, 50),
        ("settle", 13, 987, 37),
        ("release", 37, 987, 0),
    ]
    assert wallet(customer) == (987, 0, 987)
    assert_ledger_clean()


def test_usage_above_the_hold_is_capped_by_default_and_booked_as_waived(customer, now):
    services.credits_reserve(account=customer, amount=10, reference="msg_2", now=now)
    hold = services.credits_settle(account=customer, reference="msg_2", amount=14, now=now)
    assert (hold.usage, hold.captured, hold.waived) == (14, 10, 4)
    assert ledger(customer, "msg_2") == [
        ("reserve", 10, 1_000, 10),
        ("settle", 10, 990, 0),
        ("waive", 4, 990, 0),
    ]
    assert_ledger_clean()


@pytest.mark.rivya_settings({"RIVYA_BILLING": {"OVERRUN_POLICY": "available"}})
def test_with_the_available_policy_an_overrun_is_charged_up_to_what_is_left(account, now):
    services.credits_grant(account=account, amount=20, reference="bootstrap", now=now)
    services.credits_reserve(account=account, amount=10, reference="msg_3", now=now)
    services.credits_reserve(account=account, amount=8, reference="msg_4", now=now)
    # 25 credits used against a 10-credit hold; 2 are available beyond the other hold.
    hold = services.credits_settle(account=account, reference="msg_3", amount=25, now=now)
    assert (hold.captured, hold.overrun, hold.waived) == (10, 2, 13)
    assert ledger(account, "msg_3") == [
        ("reserve", 10, 20, 10),
        ("settle", 10, 10, 8),
        ("overrun", 2, 8, 8),
        ("waive", 13, 8, 8),
    ]
    assert wallet(account) == (8, 8, 0)
    assert_ledger_clean()


def test_a_worker_that_dies_gives_the_credits_back_and_its_late_settle_is_refused(customer, now):
    # Accepted with a one-hour lease: the task may wait that long in the queue.
    services.credits_reserve(account=customer, amount=40, reference="task_C", actor=KEY, now=now)
    # A worker starts it and claims a 10-minute lease ... then dies without renewing.
    started = now + timedelta(minutes=2)
    claim = services.credits_hold_renew(account=customer, reference="task_C", lease_seconds=600, now=started)
    assert services.credits_expire_lapsed_holds(now=started + timedelta(minutes=9)) == 0
    assert services.credits_expire_lapsed_holds(now=started + timedelta(minutes=11)) == 1
    assert wallet(customer) == (1_000, 0, 1_000)
    # The worker was only stalled; it comes back and tries to charge. Refused.
    with pytest.raises(StaleHoldError):
        services.credits_settle(
            account=customer,
            reference="task_C",
            amount=40,
            lease_token=claim.lease_token,
            now=started + timedelta(minutes=12),
        )
    assert ledger(customer, "task_C") == [("reserve", 40, 1_000, 40), ("expire", 40, 1_000, 0)]
    assert_ledger_clean()


def test_a_redelivered_task_is_charged_by_the_worker_that_holds_the_current_lease(customer, now):
    services.credits_reserve(account=customer, amount=40, reference="task_D", now=now)
    first = services.credits_hold_renew(account=customer, reference="task_D", now=now)
    # The broker redelivers the task to a second worker, which claims the hold.
    second = services.credits_hold_renew(account=customer, reference="task_D", now=now + timedelta(minutes=1))
    assert (first.lease_token, second.lease_token) == (1, 2)
    with pytest.raises(StaleHoldError):
        services.credits_settle(account=customer, reference="task_D", amount=40, lease_token=1, now=now)
    services.credits_settle(account=customer, reference="task_D", amount=40, lease_token=2, now=now)
    assert wallet(customer) == (960, 0, 960)
    assert_ledger_clean()


def test_the_studio_and_the_api_spend_one_wallet(account, now):
    services.credits_grant(account=account, amount=100, reference="bootstrap", now=now)
    studio = f"user:{account.pk}"
    # The Studio starts a 60-credit job (a service call, no API key).
    services.credits_reserve(account=account, amount=60, reference="studio_job_1", actor=studio, now=now)
    # An API request for 50 more is refused with nothing reserved (the API answers 402).
    with pytest.raises(InsufficientCreditsError) as short:
        services.credits_reserve(account=account, amount=50, reference="task_E", actor=KEY, now=now)
    assert (short.value.requested, short.value.available) == (50, 40)
    assert selectors.hold_get(account=account, reference="task_E") is None
    # The Studio job used 30; the 30 it did not use are available again.
    services.credits_settle(account=account, reference="studio_job_1", amount=30, actor=studio, now=now)
    services.credits_reserve(account=account, amount=50, reference="task_E", actor=KEY, now=now)
    assert wallet(account) == (70, 50, 20)
    actors = {e.reference: e.actor for e in selectors.wallet_entries(account=account, type="reserve")}
    assert actors == {"studio_job_1": studio, "task_E": KEY}
    assert_ledger_clean()


def test_a_disputed_charge_is_refunded_in_parts_never_beyond_the_charge(customer, now):
    services.credits_reserve(account=customer, amount=40, reference="task_F", now=now)
    services.credits_settle(account=customer, reference="task_F", amount=40, now=now)
    # Support refunds part of it, then the rest; each refund names its own reference.
    services.credits_refund(
        account=customer,
        reference="admin:refund:1",
        charge_reference="task_F",
        amount=15,
        actor="user:support",
        description="blurry output",
        now=now,
    )
    services.credits_refund(
        account=customer, reference="admin:refund:2", charge_reference="task_F", actor="user:support", now=now
    )
    with pytest.raises(RefundNotAllowedError):
        services.credits_refund(account=customer, reference="admin:refund:3", charge_reference="task_F", now=now)
    assert wallet(customer) == (1_000, 0, 1_000)
    assert ledger(customer, "task_F") == [("reserve", 40, 1_000, 40), ("settle", 40, 960, 0)]
    refunds = [
        (e.reference, e.amount, e.description) for e in selectors.wallet_entries(account=customer, type="refund")
    ]
    assert refunds == [("admin:refund:2", 25, ""), ("admin:refund:1", 15, "blurry output")]
    assert_ledger_clean()


def test_an_admin_chargeback_cannot_take_credits_that_running_work_holds(customer, now):
    services.credits_reserve(account=customer, amount=900, reference="task_G", now=now)
    with pytest.raises(InsufficientCreditsError):
        services.credits_adjust(account=customer, amount=-101, reference="admin:adj:1", reason="chargeback", now=now)
    services.credits_adjust(account=customer, amount=-100, reference="admin:adj:1", reason="chargeback", now=now)
    assert wallet(customer) == (900, 900, 0)
    services.credits_settle(account=customer, reference="task_G", amount=900, now=now)
    assert wallet(customer) == (0, 0, 0)
    assert [line[0] for line in ledger(customer)] == ["grant", "reserve", "adjust", "settle"]
    assert_ledger_clean()


def test_a_retried_request_charges_once(customer, now):
    # The client times out and retries the same submission: same task, same reference.
    for _ in range(3):
        services.credits_reserve(account=customer, amount=40, reference="task_H", actor=KEY, now=now)
    for _ in range(2):
        services.credits_settle(account=customer, reference="task_H", amount=40, now=now)
    assert wallet(customer) == (960, 0, 960)
    assert len(ledger(customer, "task_H")) == 2
    assert_ledger_clean()
