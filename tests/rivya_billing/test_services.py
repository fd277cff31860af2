"""The ledger's services one by one: effects, idempotency, conflicts and typed errors (any database)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import ProtectedError

from rivya_billing import selectors, services
from rivya_billing.exceptions import (
    HoldLeaseActiveError,
    HoldNotFoundError,
    HoldNotPendingError,
    InsufficientCreditsError,
    InvalidAmountError,
    InvalidReferenceError,
    ReferenceConflictError,
    RefundNotAllowedError,
    RivyaError,
    StaleHoldError,
)
from rivya_billing.models import EntryType, Hold, HoldState, LedgerEntry, LedgerImmutableError, Wallet
from tests.rivya_billing.conftest import assert_ledger_clean

pytestmark = pytest.mark.django_db


def totals(account) -> tuple[int, int, int]:
    wallet = selectors.wallet_get(account=account)
    return wallet.balance, wallet.held, wallet.available


def lines(account) -> list[tuple[str, int]]:
    return [(e.type, e.amount) for e in selectors.wallet_entries(account=account).order_by("sequence")]


@pytest.fixture
def funded(account, now):
    services.credits_grant(account=account, amount=100, reference="grant:welcome", now=now)
    return account


# --- grant, adjust -----------------------------------------------------------------------


def test_an_account_without_credits_has_an_empty_unsaved_wallet(account):
    wallet = selectors.wallet_get(account=account)
    assert (wallet.pk, wallet.balance, wallet.held, wallet.available) == (None, 0, 0, 0)
    assert not Wallet.objects.exists()


def test_credits_available_is_balance_less_held(account, make_account):
    assert selectors.credits_available(account=account) == 0  # no wallet yet
    services.credits_grant(account=account, amount=100, reference="grant")
    services.credits_reserve(account=account, amount=30, reference="job")
    assert selectors.credits_available(account=account) == 70
    assert selectors.credits_available(account=account.pk) == 70
    assert selectors.credits_available(account=make_account()) == 0  # another account's wallet is not read


def test_grant_creates_the_wallet_and_records_the_entry(account, now):
    entry = services.credits_grant(
        account=account, amount=100, reference="grant:1", actor="user:1", description="welcome", now=now
    )
    assert totals(account) == (100, 0, 100)
    assert entry.public_id.startswith("le_")
    assert (entry.sequence, entry.type, entry.amount) == (1, "grant", 100)
    assert (entry.balance_after, entry.held_after) == (100, 0)
    assert (entry.actor, entry.description, entry.created_at) == ("user:1", "welcome", now)


def test_grant_is_idempotent_by_reference_and_refuses_another_amount(account):
    first = services.credits_grant(account=account, amount=100, reference="grant:1")
    assert services.credits_grant(account=account, amount=100, reference="grant:1").pk == first.pk
    with pytest.raises(ReferenceConflictError) as conflict:
        services.credits_grant(account=account, amount=50, reference="grant:1")
    assert conflict.value.param == "amount"
    assert "amount" in str(conflict.value)
    assert totals(account) == (100, 0, 100)
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, None])
def test_amounts_are_positive_integers(account, amount):
    with pytest.raises(InvalidAmountError) as error:
        services.credits_grant(account=account, amount=amount, reference="g")
    assert error.value.param == "amount"
    assert isinstance(error.value, RivyaError)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("reference", ["", None, "x" * 256])
def test_references_are_required(account, reference):
    with pytest.raises(InvalidReferenceError):
        services.credits_reserve(account=account, amount=1, reference=reference)


def test_adjust_needs_a_reason_and_cannot_overdraw(funded):
    with pytest.raises(InvalidAmountError) as error:
        services.credits_adjust(account=funded, amount=-5, reference="adj:1", reason=" ")
    assert error.value.param == "reason"
    services.credits_reserve(account=funded, amount=90, reference="task_1")
    with pytest.raises(InsufficientCreditsError) as short:
        services.credits_adjust(account=funded, amount=-11, reference="adj:1", reason="chargeback")
    assert (short.value.requested, short.value.available) == (11, 10)
    entry = services.credits_adjust(account=funded, amount=-10, reference="adj:1", reason="chargeback", actor="user:9")
    assert (entry.type, entry.amount, entry.balance_delta, entry.description) == ("adjust", 10, -10, "chargeback")
    assert totals(funded) == (90, 90, 0)
    assert services.credits_adjust(account=funded, amount=-10, reference="adj:1", reason="again").pk == entry.pk
    with pytest.raises(ReferenceConflictError):
        services.credits_adjust(account=funded, amount=10, reference="adj:1", reason="sign flipped")
    services.credits_adjust(account=funded, amount=25, reference="adj:2", reason="goodwill")
    assert totals(funded) == (115, 90, 25)


# --- reserve -------------------------------------------------------------------------------


def test_reserve_holds_credits_without_touching_the_balance(funded, now):
    hold = services.credits_reserve(account=funded, amount=30, reference="task_1", actor="key_abc", now=now)
    assert hold.public_id.startswith("hold_")
    assert (hold.state, hold.amount, hold.actor) == ("pending", 30, "key_abc")
    assert hold.lease_expires_at == now + timedelta(hours=1)
    assert totals(funded) == (100, 30, 70)
    entry = selectors.wallet_entries(account=funded).first()
    assert (entry.type, entry.amount, entry.balance_after, entry.held_after, entry.hold_id) == (
        "reserve",
        30,
        100,
        30,
        hold.pk,
    )
    assert Hold.objects.get(pk=hold.pk).public_id == hold.public_id


def test_reserve_is_idempotent_by_reference(funded):
    first = services.credits_reserve(account=funded, amount=30, reference="task_1")
    again = services.credits_reserve(account=funded, amount=30, reference="task_1")
    assert again.pk == first.pk
    with pytest.raises(ReferenceConflictError) as conflict:
        services.credits_reserve(account=funded, amount=31, reference="task_1")
    assert (conflict.value.param, conflict.value.existing, conflict.value.given) == ("amount", 30, 31)
    assert totals(funded) == (100, 30, 70)
    # A replay after the hold was settled still returns it, and still holds nothing new.
    services.credits_settle(account=funded, reference="task_1", amount=30)
    assert services.credits_reserve(account=funded, amount=30, reference="task_1").state == "settled"
    assert totals(funded) == (70, 0, 70)


def test_reserve_beyond_available_is_refused_with_nothing_written(funded):
    services.credits_reserve(account=funded, amount=60, reference="task_1")
    with pytest.raises(InsufficientCreditsError) as short:
        services.credits_reserve(account=funded, amount=41, reference="task_2")
    assert (short.value.requested, short.value.available, short.value.param) == (41, 40, None)
    assert not Hold.objects.filter(reference="task_2").exists()
    services.credits_reserve(account=funded, amount=40, reference="task_2")
    assert totals(funded) == (100, 100, 0)


def test_reserve_without_a_wallet_is_insufficient(account):
    with pytest.raises(InsufficientCreditsError) as short:
        services.credits_reserve(account=account, amount=1, reference="task_1")
    assert short.value.available == 0


def test_reserve_in_a_callers_transaction_rolls_back_with_it(funded):
    from django.db import transaction

    def callers_work() -> None:
        with transaction.atomic():
            services.credits_reserve(account=funded, amount=10, reference="task_1")
            raise RuntimeError("the caller's work failed")

    with pytest.raises(RuntimeError):
        callers_work()
    assert totals(funded) == (100, 0, 100)
    # And a duplicate inside a caller's transaction leaves that transaction usable.
    services.credits_reserve(account=funded, amount=10, reference="task_2")
    with transaction.atomic():
        assert services.credits_reserve(account=funded, amount=10, reference="task_2").amount == 10
        services.credits_grant(account=funded, amount=5, reference="grant:2")
    assert totals(funded) == (105, 10, 95)


# --- settle ------------------------------------------------------------------------------------


def test_settle_below_the_hold_charges_usage_and_releases_the_rest(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    hold = services.credits_settle(account=funded, reference="task_1", amount=12, actor="key_abc")
    assert (hold.state, hold.usage, hold.captured, hold.overrun, hold.waived) == ("settled", 12, 12, 0, 0)
    assert hold.released == 18
    assert totals(funded) == (88, 0, 88)
    assert lines(funded)[-2:] == [("settle", 12), ("release", 18)]


def test_settle_and_release_name_the_holds_actor_unless_told_another(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1", actor="key_abc")
    services.credits_settle(account=funded, reference="task_1", amount=12)
    services.credits_reserve(account=funded, amount=5, reference="task_2", actor="key_abc")
    services.credits_release(account=funded, reference="task_2")
    services.credits_reserve(account=funded, amount=5, reference="task_3", actor="key_abc")
    services.credits_release(account=funded, reference="task_3", actor="user:7")
    entries = selectors.wallet_entries(account=funded).exclude(type=EntryType.GRANT).order_by("sequence")
    assert [(e.reference, e.type, e.actor) for e in entries] == [
        ("task_1", "reserve", "key_abc"),
        ("task_1", "settle", "key_abc"),
        ("task_1", "release", "key_abc"),
        ("task_2", "reserve", "key_abc"),
        ("task_2", "release", "key_abc"),
        ("task_3", "reserve", "key_abc"),
        ("task_3", "release", "user:7"),
    ]


def test_settle_of_zero_usage_releases_everything(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    hold = services.credits_settle(account=funded, reference="task_1", amount=0)
    assert (hold.state, hold.captured) == ("settled", 0)
    assert totals(funded) == (100, 0, 100)
    assert lines(funded)[-1] == ("release", 30)


def test_usage_above_the_hold_is_capped_and_the_difference_booked(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    hold = services.credits_settle(account=funded, reference="task_1", amount=45)
    assert (hold.captured, hold.overrun, hold.waived) == (30, 0, 15)
    assert totals(funded) == (70, 0, 70)
    assert lines(funded)[-2:] == [("settle", 30), ("waive", 15)]
    waive = LedgerEntry.objects.get(type="waive")
    assert (waive.balance_delta, waive.held_delta) == (0, 0)


@pytest.mark.rivya_settings({"RIVYA_BILLING": {"OVERRUN_POLICY": "available"}})
def test_overrun_policy_available_charges_the_difference_up_to_what_is_available(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    hold = services.credits_settle(account=funded, reference="task_1", amount=45)
    assert (hold.captured, hold.overrun, hold.waived) == (30, 15, 0)
    assert totals(funded) == (55, 0, 55)
    assert lines(funded)[-2:] == [("settle", 30), ("overrun", 15)]
    # Another hold keeps 50 of the 55 held: only 5 are available for its overrun.
    services.credits_reserve(account=funded, amount=10, reference="task_2")
    services.credits_reserve(account=funded, amount=40, reference="task_3")
    hold = services.credits_settle(account=funded, reference="task_2", amount=30)
    assert (hold.captured, hold.overrun, hold.waived) == (10, 5, 15)
    assert totals(funded) == (40, 40, 0)
    assert lines(funded)[-3:] == [("settle", 10), ("overrun", 5), ("waive", 15)]
    assert_ledger_clean()


def test_settle_is_idempotent_and_refuses_another_amount(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    first = services.credits_settle(account=funded, reference="task_1", amount=20)
    assert services.credits_settle(account=funded, reference="task_1", amount=20).pk == first.pk
    with pytest.raises(ReferenceConflictError) as conflict:
        services.credits_settle(account=funded, reference="task_1", amount=21)
    assert conflict.value.param == "amount"
    assert totals(funded) == (80, 0, 80)


def test_settle_of_an_unknown_or_released_hold_is_refused(funded):
    with pytest.raises(HoldNotFoundError):
        services.credits_settle(account=funded, reference="task_x", amount=1)
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    services.credits_release(account=funded, reference="task_1")
    with pytest.raises(HoldNotPendingError) as error:
        services.credits_settle(account=funded, reference="task_1", amount=1)
    assert error.value.state == "released"
    assert not isinstance(error.value, StaleHoldError)


def test_holds_are_scoped_to_their_account(funded, make_account):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    other = make_account()
    with pytest.raises(HoldNotFoundError):
        services.credits_settle(account=other, reference="task_1", amount=1)
    with pytest.raises(HoldNotFoundError):
        services.credits_release(account=other, reference="task_1")
    # The same reference in another wallet is another hold.
    services.credits_grant(account=other, amount=5, reference="grant:welcome")
    assert services.credits_reserve(account=other, amount=5, reference="task_1").amount == 5


# --- leases: renew, stale workers, expiry -----------------------------------------------------


def test_a_late_settle_after_the_lease_lapsed_is_refused(funded, now):
    services.credits_reserve(account=funded, amount=30, reference="task_1", lease_seconds=60, now=now)
    with pytest.raises(StaleHoldError):
        services.credits_settle(account=funded, reference="task_1", amount=30, now=now + timedelta(seconds=60))
    assert totals(funded) == (100, 30, 70)  # the sweeper will return it
    assert services.credits_expire_lapsed_holds(now=now + timedelta(seconds=61)) == 1
    assert totals(funded) == (100, 0, 100)
    with pytest.raises(StaleHoldError) as error:
        services.credits_settle(account=funded, reference="task_1", amount=30, now=now + timedelta(seconds=62))
    assert error.value.state == "expired"
    assert_ledger_clean()


def test_running_work_renews_its_lease_and_a_superseded_worker_is_stale(funded, now):
    services.credits_reserve(account=funded, amount=30, reference="task_1", lease_seconds=60, now=now)
    first = services.credits_hold_renew(account=funded, reference="task_1", lease_seconds=300, now=now)
    assert (first.lease_token, first.lease_expires_at) == (1, now + timedelta(seconds=300))
    later = now + timedelta(seconds=200)
    renewed = services.credits_hold_renew(
        account=funded, reference="task_1", lease_token=1, lease_seconds=300, now=later
    )
    assert (renewed.lease_token, renewed.lease_expires_at) == (1, later + timedelta(seconds=300))
    # The first worker's lease would have lapsed at +300s; the renewal keeps the hold alive.
    assert services.credits_expire_lapsed_holds(now=now + timedelta(seconds=400)) == 0
    # A second worker takes the task over (the first one looked dead): token 2.
    second = services.credits_hold_renew(account=funded, reference="task_1", now=later)
    assert second.lease_token == 2
    with pytest.raises(StaleHoldError):
        services.credits_hold_renew(account=funded, reference="task_1", lease_token=1, now=later)
    with pytest.raises(StaleHoldError):
        services.credits_settle(account=funded, reference="task_1", amount=30, lease_token=1, now=later)
    with pytest.raises(StaleHoldError):
        services.credits_release(account=funded, reference="task_1", lease_token=1, now=later)
    hold = services.credits_settle(account=funded, reference="task_1", amount=30, lease_token=2, now=later)
    assert hold.state == "settled"


def test_a_lapsed_lease_cannot_be_renewed(funded, now):
    services.credits_reserve(account=funded, amount=30, reference="task_1", lease_seconds=60, now=now)
    with pytest.raises(StaleHoldError):
        services.credits_hold_renew(account=funded, reference="task_1", now=now + timedelta(seconds=61))


def test_expire_waits_for_the_lease_and_is_idempotent(funded, now):
    services.credits_reserve(account=funded, amount=30, reference="task_1", lease_seconds=60, now=now)
    with pytest.raises(HoldLeaseActiveError):
        services.credits_hold_expire(account=funded, reference="task_1", now=now + timedelta(seconds=59))
    late = now + timedelta(seconds=60)
    hold = services.credits_hold_expire(account=funded, reference="task_1", now=late)
    assert (hold.state, hold.resolved_at) == ("expired", late)
    assert services.credits_hold_expire(account=funded, reference="task_1", now=late).state == "expired"
    assert totals(funded) == (100, 0, 100)
    with pytest.raises(HoldNotPendingError):
        services.credits_release(account=funded, reference="task_1")


def test_the_sweeper_expires_only_lapsed_pending_holds_in_batches(funded, now):
    for n in range(5):
        services.credits_reserve(account=funded, amount=1, reference=f"task_{n}", lease_seconds=10 + n, now=now)
    services.credits_reserve(account=funded, amount=1, reference="task_long", lease_seconds=3600, now=now)
    services.credits_settle(account=funded, reference="task_0", amount=1, now=now)
    at = now + timedelta(seconds=20)
    assert services.credits_expire_lapsed_holds(now=at, batch_size=3) == 3
    assert services.credits_expire_lapsed_holds(now=at, batch_size=3) == 1
    assert services.credits_expire_lapsed_holds(now=at) == 0
    states = dict(Hold.objects.values_list("reference", "state"))
    assert states == {
        "task_0": "settled",
        "task_1": "expired",
        "task_2": "expired",
        "task_3": "expired",
        "task_4": "expired",
        "task_long": "pending",
    }
    assert totals(funded) == (99, 1, 98)
    assert_ledger_clean()


def test_release_works_after_the_lease_lapsed(funded, now):
    services.credits_reserve(account=funded, amount=30, reference="task_1", lease_seconds=60, now=now)
    hold = services.credits_release(account=funded, reference="task_1", now=now + timedelta(hours=1))
    assert hold.state == "released"
    assert services.credits_release(account=funded, reference="task_1").state == "released"
    assert totals(funded) == (100, 0, 100)


# --- refund ----------------------------------------------------------------------------------------


def test_refund_returns_captured_credits_once(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    services.credits_settle(account=funded, reference="task_1", amount=25)
    entry = services.credits_refund(
        account=funded, reference="refund:task_1", charge_reference="task_1", actor="user:1", description="dispute"
    )
    assert (entry.type, entry.amount, entry.balance_after, entry.description) == ("refund", 25, 100, "dispute")
    again = services.credits_refund(account=funded, reference="refund:task_1", charge_reference="task_1")
    assert again.pk == entry.pk
    with pytest.raises(RefundNotAllowedError):
        services.credits_refund(account=funded, reference="refund:task_1:again", charge_reference="task_1")
    assert totals(funded) == (100, 0, 100)
    assert Hold.objects.get(reference="task_1").refunded == 25


def test_partial_refunds_never_exceed_the_charge(funded):
    services.credits_reserve(account=funded, amount=30, reference="task_1")
    services.credits_settle(account=funded, reference="task_1", amount=30)
    services.credits_refund(account=funded, reference="r1", charge_reference="task_1", amount=10)
    with pytest.raises(ReferenceConflictError) as conflict:
        services.credits_refund(account=funded, reference="r1", charge_reference="task_1", amount=11)
    assert conflict.value.param == "amount"
    with pytest.raises(RefundNotAllowedError):
        services.credits_refund(account=funded, reference="r2", charge_reference="task_1", amount=21)
    services.credits_refund(account=funded, reference="r2", charge_reference="task_1", amount=20)
    assert totals(funded) == (100, 0, 100)


def test_refund_reference_is_tied_to_its_charge(funded):
    for ref in ("task_1", "task_2"):
        services.credits_reserve(account=funded, amount=10, reference=ref)
        services.credits_settle(account=funded, reference=ref, amount=10)
    services.credits_refund(account=funded, reference="r1", charge_reference="task_1")
    with pytest.raises(ReferenceConflictError) as conflict:
        services.credits_refund(account=funded, reference="r1", charge_reference="task_2")
    assert conflict.value.param == "charge_reference"


def test_only_charged_work_can_be_refunded(funded):
    services.credits_reserve(account=funded, amount=10, reference="task_1")
    with pytest.raises(RefundNotAllowedError):
        services.credits_refund(account=funded, reference="r1", charge_reference="task_1")
    services.credits_settle(account=funded, reference="task_1", amount=0)
    with pytest.raises(RefundNotAllowedError):
        services.credits_refund(account=funded, reference="r1", charge_reference="task_1")
    with pytest.raises(HoldNotFoundError) as missing:
        services.credits_refund(account=funded, reference="r1", charge_reference="task_nope")
    assert missing.value.param == "charge_reference"


@pytest.mark.rivya_settings({"RIVYA_BILLING": {"OVERRUN_POLICY": "available"}})
def test_an_overrun_can_be_refunded_too(funded):
    services.credits_reserve(account=funded, amount=10, reference="task_1")
    services.credits_settle(account=funded, reference="task_1", amount=15)
    entry = services.credits_refund(account=funded, reference="r1", charge_reference="task_1")
    assert entry.amount == 15
    assert totals(funded) == (100, 0, 100)


# --- selectors, the ledger's immutability, the account's protection --------------------------------


def test_entries_filter_by_type_and_reference(funded):
    services.credits_reserve(account=funded, amount=10, reference="task_1")
    services.credits_settle(account=funded, reference="task_1", amount=4)
    services.credits_reserve(account=funded, amount=10, reference="task_2")
    by_ref = selectors.wallet_entries(account=funded, reference="task_1")
    assert [e.type for e in by_ref] == ["release", "settle", "reserve"]
    assert [e.reference for e in selectors.wallet_entries(account=funded, type="reserve")] == ["task_2", "task_1"]
    assert selectors.wallet_entries(account=funded, type=["grant", "settle"]).count() == 2
    assert selectors.hold_get(account=funded, reference="task_2").state == "pending"
    assert selectors.wallet_holds(account=funded, state="pending").count() == 1


def test_activity_totals(funded):
    services.credits_reserve(account=funded, amount=10, reference="task_1")
    services.credits_settle(account=funded, reference="task_1", amount=4)
    services.credits_reserve(account=funded, amount=10, reference="task_2")
    services.credits_release(account=funded, reference="task_2")
    services.credits_refund(account=funded, reference="r1", charge_reference="task_1", amount=1)
    services.credits_adjust(account=funded, amount=-3, reference="a1", reason="fix")
    activity = selectors.wallet_activity(account=funded)
    assert {k: v for k, v in activity.items() if k != "since"} == {
        "granted": 100,
        "reserved": 20,
        "charged": 4,
        "released": 16,
        "refunded": 1,
        "adjusted": -3,
        "expired": 0,
        "entries": 8,
    }


def test_entries_cannot_be_changed_or_deleted_through_the_orm(funded):
    entry = LedgerEntry.objects.get()
    entry.amount = 1_000
    with pytest.raises(LedgerImmutableError):
        entry.save()
    with pytest.raises(LedgerImmutableError):
        entry.delete()
    with pytest.raises(LedgerImmutableError):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=1_000)
    with pytest.raises(LedgerImmutableError):
        LedgerEntry.objects.all().delete()


def test_deleting_an_account_never_cascades_into_the_ledger(funded):
    with pytest.raises(ProtectedError):
        funded.delete()
    assert LedgerEntry.objects.filter(type=EntryType.GRANT).count() == 1


def test_hold_states_are_the_documented_four():
    assert set(HoldState.values) == {"pending", "settled", "released", "expired"}


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"OVERRUN_POLICY": "negative"}, "rivya_billing.E001"),
        ({"HOLD_LEASE_SECONDS": 0}, "rivya_billing.E002"),
        ({"EXPIRE_BATCH_SIZE": "500"}, "rivya_billing.E002"),
    ],
)
def test_system_checks_refuse_broken_billing_settings(rivya_settings, overrides, check_id):
    from rivya_billing.checks import check_billing_settings

    assert check_billing_settings() == []
    rivya_settings("RIVYA_BILLING", **overrides)
    assert [error.id for error in check_billing_settings()] == [check_id]
