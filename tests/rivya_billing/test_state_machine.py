"""A Hypothesis state machine drives every ledger service against a plain-Python model.

Each example is a fresh account; each step is one service call (grant, adjust,
reserve, settle, release, expire, renew, refund, the sweeper, the clock, the
overrun policy, the low-balance threshold, grants with and without expiry and the
grant-expiry sweep) with small amounts and a handful of references, so repeats,
conflicts, overdraft attempts, stale workers and lapsed leases come up often.
After every step the wallet, every hold and every error must match the model,
and ``wallet_reconcile`` must find nothing wrong. Expiring grants are modelled as
buckets drawn soonest expiry first by every decrease of the balance; the grant-expiry
sweep must never take held credits nor non-expiring ones, and what the buckets have left
never exceeds the balance. The low-balance alert is judged
on the model after every step (armed at or above the threshold; one notice per
fall below while armed) and must match the wallet's trigger.

On PostgreSQL it runs 200 examples of 50 steps (marked ``slow``: once in the full
run, not in the orghost tier); on any database a shorter run keeps the default
suite fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rivya_billing import selectors, services
from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import (
    HoldLeaseActiveError,
    HoldNotFoundError,
    HoldNotPendingError,
    InsufficientCreditsError,
    ReferenceConflictError,
    RefundNotAllowedError,
    StaleHoldError,
)
from rivya_billing.models import CreditGrant, Hold, LowBalanceNotice
from tests import factories
from tests.rivya_billing.conftest import T0

HOLD_REFS = st.sampled_from([f"task_{n}" for n in range(5)])
GRANT_REFS = st.sampled_from([f"grant:{n}" for n in range(6)])
ADJUST_REFS = st.sampled_from([f"adjust:{n}" for n in range(8)])
REFUND_REFS = st.sampled_from([f"refund:{n}" for n in range(4)])
TOKENS = st.sampled_from(["none", "current", "stale"])


@dataclass
class ModelHold:
    amount: int
    lease_expires_at: datetime
    state: str = "pending"
    token: int = 0
    usage: int | None = None
    captured: int = 0
    overrun: int = 0
    waived: int = 0
    refunded: int = 0


@dataclass
class ModelGrant:
    expires_at: datetime
    order: int  # creation order: the tie-break of equal expiries (the row id)
    amount: int
    remaining: int
    drawn: int = 0
    expired: int = 0


@dataclass
class Model:
    """The wallet as it should be, in plain Python."""

    balance: int = 0
    held: int = 0
    holds: dict[str, ModelHold] = field(default_factory=dict)
    grants: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)
    buckets: dict[str, ModelGrant] = field(default_factory=dict)
    adjusts: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, tuple[str, int]] = field(default_factory=dict)
    threshold: int | None = None
    armed: bool = True
    notices: list[tuple[int, int]] = field(default_factory=list)

    def judge_alert(self) -> None:
        """What the wallet's trigger decides on each change: one notice per fall below, re-armed at or above."""
        if self.threshold is None:
            return
        if self.armed and self.available < self.threshold:
            self.armed = False
            self.notices.append((self.available, self.threshold))
        elif not self.armed and self.available >= self.threshold:
            self.armed = True

    @property
    def available(self) -> int:
        return self.balance - self.held

    def ordered_buckets(self) -> list[tuple[str, ModelGrant]]:
        return sorted(self.buckets.items(), key=lambda item: (item[1].expires_at, item[1].order))

    def spend(self, amount: int) -> None:
        """A decrease of the balance: the balance falls, and the buckets are drawn soonest expiry first."""
        self.balance -= amount
        for _ref, bucket in self.ordered_buckets():
            take = min(amount, bucket.remaining)
            bucket.remaining -= take
            bucket.drawn += take
            amount -= take

    def left(self) -> int:
        return sum(b.remaining for b in self.buckets.values())


class LedgerMachine(RuleBasedStateMachine):
    # References a reservation was attempted with (successfully or not): the hold rules draw
    # from these, so most calls hit a hold that exists.
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        # Each example runs in a savepoint rolled back at teardown: no example sees another's rows
        # (the sweeper works on every wallet, so leftovers would change its counts).
        self._example = transaction.atomic()
        self._example.__enter__()
        self.account = factories.account_create()
        self.model = Model()
        self.now = T0

    # -- helpers -----------------------------------------------------------------

    def call(self, expected: type[BaseException] | None, fn: Any, **kwargs: Any) -> Any:
        """Call ``fn`` and require exactly the expected error class (or none)."""
        try:
            result = fn(now=self.now, **kwargs)
        except Exception as exc:
            if type(exc) is not expected:
                raise AssertionError(f"{fn.__name__}({kwargs}) raised {exc!r}, expected {expected}") from exc
            return None
        assert expected is None, f"{fn.__name__}({kwargs}) returned {result!r}, expected {expected.__name__}"
        return result

    def token_for(self, ref: str, choice: str) -> int | None:
        hold = self.model.holds.get(ref)
        if choice == "none" or hold is None:
            return None
        return hold.token if choice == "current" else hold.token + 7

    # -- setup -------------------------------------------------------------------

    @initialize(amount=st.integers(0, 150), policy=st.sampled_from(["cap", "available"]))
    def opening_grant(self, amount: int, policy: str) -> None:
        self.set_overrun_policy(policy)
        if amount:
            self.grant(ref="grant:opening", amount=amount)

    # -- rules: one per service ------------------------------------------------------

    @rule(
        ref=GRANT_REFS,
        amount=st.sampled_from([5, 20, 60]),
        expires_in=st.none() | st.none() | st.sampled_from([60, 300, 300, 900, 2400]),
    )
    def grant(self, ref: str, amount: int, expires_in: int | None = None) -> None:
        expires_at = None if expires_in is None else self.now + timedelta(seconds=expires_in)
        expected = None
        if ref in self.model.grants:
            expected = ReferenceConflictError if self.model.grants[ref] != (amount, expires_at) else None
        entry = self.call(
            expected, services.credits_grant, account=self.account, amount=amount, reference=ref, expires_at=expires_at
        )
        if entry is not None and ref not in self.model.grants:
            self.model.grants[ref] = (amount, expires_at)
            self.model.balance += amount
            if expires_at is not None:
                self.model.buckets[ref] = ModelGrant(expires_at, len(self.model.buckets), amount, amount)
        if entry is not None:
            assert (entry.type, entry.amount) == ("grant", amount)

    @rule(ref=ADJUST_REFS, amount=st.sampled_from([-40, -7, -1, 3, 30]))
    def adjust(self, ref: str, amount: int) -> None:
        expected = None
        if ref in self.model.adjusts:
            expected = ReferenceConflictError if self.model.adjusts[ref] != amount else None
        elif amount < 0 and self.model.available < -amount:
            expected = InsufficientCreditsError
        entry = self.call(
            expected, services.credits_adjust, account=self.account, amount=amount, reference=ref, reason="test"
        )
        if entry is not None and ref not in self.model.adjusts:
            self.model.adjusts[ref] = amount
            if amount < 0:
                self.model.spend(-amount)
            else:
                self.model.balance += amount

    @rule(target=holds, ref=HOLD_REFS, amount=st.integers(1, 50), lease=st.integers(30, 1800))
    def reserve(self, ref: str, amount: int, lease: int) -> str:
        existing = self.model.holds.get(ref)
        if existing is not None:
            expected = ReferenceConflictError if existing.amount != amount else None
        else:
            expected = InsufficientCreditsError if self.model.available < amount else None
        hold = self.call(
            expected,
            services.credits_reserve,
            account=self.account,
            amount=amount,
            reference=ref,
            lease_seconds=lease,
            actor="key_machine",
        )
        if hold is not None and existing is None:
            self.model.holds[ref] = ModelHold(amount=amount, lease_expires_at=self.now + timedelta(seconds=lease))
            self.model.held += amount
        if hold is not None:
            assert hold.state == self.model.holds[ref].state
        return ref

    @rule(ref=holds, usage=st.integers(0, 70), token=TOKENS)
    def settle(self, ref: str, usage: int, token: str) -> None:
        hold = self.model.holds.get(ref)
        lease_token = self.token_for(ref, token)
        if hold is None:
            expected = HoldNotFoundError
        elif hold.state == "settled":
            expected = None if hold.usage == usage else ReferenceConflictError
        elif hold.state == "released":
            expected = HoldNotPendingError
        elif hold.state == "expired":
            expected = StaleHoldError
        elif (lease_token is not None and lease_token != hold.token) or hold.lease_expires_at <= self.now:
            expected = StaleHoldError
        else:
            expected = None
        result = self.call(
            expected,
            services.credits_settle,
            account=self.account,
            reference=ref,
            amount=usage,
            lease_token=lease_token,
        )
        if result is None or hold.state == "settled":
            return
        captured = min(usage, hold.amount)
        remainder = hold.amount - captured
        excess = usage - captured
        overrun = min(excess, self.model.available + remainder) if billing_settings.OVERRUN_POLICY == "available" else 0
        hold.state, hold.usage, hold.captured, hold.overrun, hold.waived = (
            "settled",
            usage,
            captured,
            overrun,
            excess - overrun,
        )
        self.model.held -= hold.amount
        self.model.spend(captured + overrun)
        assert (result.captured, result.overrun, result.waived) == (captured, overrun, excess - overrun)

    @rule(ref=holds, token=TOKENS)
    def release(self, ref: str, token: str) -> None:
        hold = self.model.holds.get(ref)
        lease_token = self.token_for(ref, token)
        if hold is None:
            expected = HoldNotFoundError
        elif hold.state == "released":
            expected = None
        elif hold.state == "settled":
            expected = HoldNotPendingError
        elif hold.state == "expired":
            expected = StaleHoldError
        elif lease_token is not None and lease_token != hold.token:
            expected = StaleHoldError
        else:
            expected = None
        result = self.call(
            expected, services.credits_release, account=self.account, reference=ref, lease_token=lease_token
        )
        if result is not None and hold.state == "pending":
            hold.state = "released"
            self.model.held -= hold.amount

    @rule(ref=holds)
    def expire(self, ref: str) -> None:
        hold = self.model.holds.get(ref)
        if hold is None:
            expected = HoldNotFoundError
        elif hold.state == "expired":
            expected = None
        elif hold.state != "pending":
            expected = HoldNotPendingError
        elif hold.lease_expires_at > self.now:
            expected = HoldLeaseActiveError
        else:
            expected = None
        result = self.call(expected, services.credits_hold_expire, account=self.account, reference=ref)
        if result is not None and hold.state == "pending":
            hold.state = "expired"
            self.model.held -= hold.amount

    @rule(ref=holds, token=TOKENS, seconds=st.integers(30, 1800))
    def renew(self, ref: str, token: str, seconds: int) -> None:
        hold = self.model.holds.get(ref)
        lease_token = self.token_for(ref, token)
        if hold is None:
            expected = HoldNotFoundError
        elif hold.state == "expired":
            expected = StaleHoldError
        elif hold.state != "pending":
            expected = HoldNotPendingError
        elif (lease_token is not None and lease_token != hold.token) or hold.lease_expires_at <= self.now:
            expected = StaleHoldError
        else:
            expected = None
        result = self.call(
            expected,
            services.credits_hold_renew,
            account=self.account,
            reference=ref,
            lease_seconds=seconds,
            lease_token=lease_token,
        )
        if result is not None:
            hold.lease_expires_at = self.now + timedelta(seconds=seconds)
            hold.token += 1 if lease_token is None else 0
            assert result.lease_token == hold.token

    @rule(ref=REFUND_REFS, charge=holds, amount=st.none() | st.integers(1, 60))
    def refund(self, ref: str, charge: str, amount: int | None) -> None:
        hold = self.model.holds.get(charge)
        existing = self.model.refunds.get(ref)
        refundable = (hold.captured + hold.overrun - hold.refunded) if hold else 0
        if hold is None:
            expected = HoldNotFoundError
        elif existing is not None:
            conflict = existing[0] != charge or (amount is not None and amount != existing[1])
            expected = ReferenceConflictError if conflict else None
        elif hold.state != "settled" or hold.captured + hold.overrun == 0:
            expected = RefundNotAllowedError
        elif refundable == 0 or (amount if amount is not None else refundable) > refundable:
            expected = RefundNotAllowedError
        else:
            expected = None
        entry = self.call(
            expected,
            services.credits_refund,
            account=self.account,
            reference=ref,
            charge_reference=charge,
            amount=amount,
        )
        if entry is not None and existing is None:
            refund = amount if amount is not None else refundable
            self.model.refunds[ref] = (charge, refund)
            hold.refunded += refund
            self.model.balance += refund
            assert entry.amount == refund

    @rule()
    def sweep(self) -> None:
        due = [h for h in self.model.holds.values() if h.state == "pending" and h.lease_expires_at <= self.now]
        assert services.credits_expire_lapsed_holds(now=self.now) == len(due)
        for hold in due:
            hold.state = "expired"
            self.model.held -= hold.amount

    @rule()
    def expire_grants(self) -> None:
        """The grant-expiry sweep: each due bucket, soonest first, loses what holds do not cover."""
        held, available_before = self.model.held, self.model.available
        non_expiring_before = self.model.balance - self.model.left()
        total = 0
        for _ref, bucket in self.model.ordered_buckets():
            if bucket.expires_at > self.now or bucket.remaining == 0:
                continue
            before = sum(
                b.remaining
                for _r, b in self.model.ordered_buckets()
                if (b.expires_at, b.order) < (bucket.expires_at, bucket.order)
            )
            expiring = bucket.remaining - min(bucket.remaining, max(0, held - before))
            if expiring:
                bucket.remaining -= expiring
                bucket.expired += expiring
                self.model.balance -= expiring
                total += expiring
                # Each expiry is a wallet change the low-balance trigger judges on its own.
                self.model.judge_alert()
        assert services.credits_expire_grants(now=self.now) == total
        # Never held credits, never non-expiring ones.
        assert total <= available_before
        assert self.model.held == held
        assert self.model.balance - self.model.left() == non_expiring_before

    @rule(threshold=st.sampled_from([None, 5, 20, 60, 100]))
    def set_alert(self, threshold: int | None) -> None:
        wallet = services.credits_alert_set(account=self.account, low_balance_threshold=threshold)
        if threshold != self.model.threshold:
            self.model.threshold, self.model.armed = threshold, True
        self.model.judge_alert()
        assert (wallet.low_balance_threshold, wallet.low_balance_armed) == (self.model.threshold, self.model.armed)

    @rule(seconds=st.integers(1, 400))
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(policy=st.sampled_from(["cap", "available"]))
    def set_overrun_policy(self, policy: str) -> None:
        django_settings.RIVYA_BILLING = {**django_settings.RIVYA_BILLING, "OVERRUN_POLICY": policy}
        billing_settings.reload()

    # -- invariants, after every step ------------------------------------------------------

    @invariant()
    def wallet_matches_the_model(self) -> None:
        wallet = selectors.wallet_get(account=self.account)
        assert (wallet.balance, wallet.held) == (self.model.balance, self.model.held)
        assert wallet.held >= 0
        assert wallet.available >= 0

    @invariant()
    def low_balance_alert_matches_the_model(self) -> None:
        # Every step moves available at most once per wallet change, and hold sweeps only raise
        # it, so judging the model once per step sees the same crossings as the trigger (the
        # grant-expiry sweep, which lowers it bucket by bucket, judges after each bucket).
        self.model.judge_alert()
        wallet = selectors.wallet_get(account=self.account)
        assert wallet.low_balance_armed == self.model.armed
        stored = list(
            LowBalanceNotice.objects.filter(wallet__account=self.account)
            .order_by("pk")
            .values_list("available", "threshold")
        )
        assert stored == self.model.notices

    @invariant()
    def grants_match_the_model(self) -> None:
        stored = {
            g.reference: (g.amount, g.remaining, g.drawn, g.expired, g.expires_at)
            for g in CreditGrant.objects.filter(wallet__account=self.account)
        }
        expected = {
            ref: (b.amount, b.remaining, b.drawn, b.expired, b.expires_at) for ref, b in self.model.buckets.items()
        }
        assert stored == expected
        assert self.model.left() <= self.model.balance

    @invariant()
    def holds_match_the_model(self) -> None:
        stored = {
            h.reference: (h.amount, h.state, h.lease_token, h.captured, h.overrun, h.waived, h.refunded)
            for h in Hold.objects.filter(wallet__account=self.account)
        }
        expected = {
            ref: (h.amount, h.state, h.token, h.captured, h.overrun, h.waived, h.refunded)
            for ref, h in self.model.holds.items()
        }
        assert stored == expected

    @invariant()
    def ledger_reconciles(self) -> None:
        wallet = selectors.wallet_get(account=self.account)
        if wallet.pk is not None:
            check = selectors.wallet_reconcile(wallet_id=wallet.pk)
            assert check.ok, check.problems

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._example.__exit__(None, None, None)


@pytest.fixture
def machine_settings(settings: Any, db: None) -> Any:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.RIVYA_BILLING = {**(settings.RIVYA_BILLING or {}), "OVERRUN_POLICY": "cap"}
    yield
    billing_settings.reload()


def run_machine(examples: int, steps: int) -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


@pytest.mark.usefixtures("machine_settings")
def test_ledger_state_machine_short_run():
    run_machine(examples=40, steps=40)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.usefixtures("machine_settings")
def test_ledger_state_machine_on_postgresql():
    run_machine(examples=200, steps=50)
