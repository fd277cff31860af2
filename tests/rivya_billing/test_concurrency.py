"""No overdraft, one winner, one effect: the ledger under real concurrency.

Real threads, each on its own database connection, released together by a
``threading.Barrier`` (``tests/rivya_billing/concurrency.py``). The PostgreSQL
tests are the acceptance numbers of issue 4; they repeat ``RIVYA_STRESS_REPEATS``
times (``make stress``: 20; otherwise once). After every run the ledger
reconciles (``rivya_ledger_check``).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from rivya_billing import selectors, services
from rivya_billing.exceptions import (
    HoldNotPendingError,
    InsufficientCreditsError,
    ReferenceConflictError,
    RefundNotAllowedError,
)
from rivya_billing.models import Hold, LedgerEntry
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import assert_ledger_clean, stress_repeats

pytestmark = [pytest.mark.usefixtures("thread_connections")]
postgres_stress = [pytest.mark.postgres, pytest.mark.stress]


def api_actor() -> str:
    return "key_" + secrets.token_hex(8)


def studio_actor(account) -> str:
    return f"user:{account.pk}"


def actor_for(surface: str, account, i: int) -> str:
    if surface == "api":
        return api_actor()
    if surface == "studio":
        return studio_actor(account)
    return api_actor() if i % 2 else studio_actor(account)  # both surfaces on one wallet


def funded_account(make_account, credits: int):
    account = make_account()
    services.credits_grant(account=account, amount=credits, reference="grant:initial")
    return account


def wallet_totals(account) -> tuple[int, int]:
    wallet = selectors.wallet_get(account=account)
    return wallet.balance, wallet.held


@pytest.mark.parametrize(("amount", "expected_wins", "left"), [(1, 100, 0), (7, 14, 2)])
@pytest.mark.parametrize("surface", ["api", "studio", "api+studio"])
@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_200_concurrent_reserves_on_100_credits_never_overdraw(
    make_account, amount, expected_wins, left, surface, repeat
):
    account = funded_account(make_account, 100)

    run = run_concurrently(
        200,
        lambda i: services.credits_reserve(
            account=account, amount=amount, reference=f"task_{i}", actor=actor_for(surface, account, i)
        ),
    )

    assert run.unexpected(InsufficientCreditsError) == []
    assert len(run.winners()) == expected_wins, (run.threads, run.errors())
    assert run.errors() == {"InsufficientCreditsError": 200 - expected_wins}
    assert wallet_totals(account) == (100, 100 - left)
    assert selectors.wallet_get(account=account).available == left
    assert Hold.objects.filter(wallet__account=account, state="pending").count() == expected_wins
    assert LedgerEntry.objects.filter(wallet__account=account).count() == 1 + expected_wins
    sequences = sorted(LedgerEntry.objects.filter(wallet__account=account).values_list("sequence", flat=True))
    assert sequences == list(range(1, expected_wins + 2))
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_50_racing_settle_release_expire_calls_resolve_a_hold_once(make_account, repeat):
    account = funded_account(make_account, 100)
    hold = services.credits_reserve(account=account, amount=30, reference="task_1", lease_seconds=600)
    sweeper_clock = hold.lease_expires_at + timedelta(seconds=1)  # the sweeper sees the lease as lapsed

    def op(i: int):
        kind = ("settle", "release", "expire")[i % 3]
        if kind == "settle":  # every settle reports a different usage, so at most one can succeed
            return kind, services.credits_settle(account=account, reference="task_1", amount=i // 3)
        if kind == "release":
            return kind, services.credits_release(account=account, reference="task_1")
        return kind, services.credits_hold_expire(account=account, reference="task_1", now=sweeper_clock)

    run = run_concurrently(50, op)

    final = Hold.objects.get(pk=hold.pk)
    winner = {"settled": "settle", "released": "release", "expired": "expire"}[final.state]
    kinds = {kind for kind, _ in run.winners()}
    assert kinds == {winner}, (kinds, run.errors())
    if winner == "settle":
        assert len(run.winners()) == 1
    assert run.unexpected(HoldNotPendingError, ReferenceConflictError) == []
    resolution_lines = LedgerEntry.objects.filter(hold=final).exclude(type="reserve").values_list("type", flat=True)
    expected_lines = {
        "settle": {"settle", "release"} - ({"settle"} if final.captured == 0 else set()),
        "release": {"release"},
        "expire": {"expire"},
    }[winner]
    if winner == "settle" and final.captured == 30:
        expected_lines = {"settle"}
    assert sorted(resolution_lines) == sorted(expected_lines)
    assert wallet_totals(account) == (100 - final.captured, 0)
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_200_duplicate_reserves_make_one_hold(make_account, repeat):
    account = funded_account(make_account, 100)

    run = run_concurrently(200, lambda i: services.credits_reserve(account=account, amount=5, reference="task_dup"))

    assert run.errors() == {}
    assert {hold.pk for hold in run.winners()} == {Hold.objects.get(wallet__account=account).pk}
    assert wallet_totals(account) == (100, 5)
    assert LedgerEntry.objects.filter(wallet__account=account, type="reserve").count() == 1
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_50_concurrent_refunds_of_one_charge_refund_once(make_account, repeat):
    account = funded_account(make_account, 100)
    services.credits_reserve(account=account, amount=40, reference="task_1")
    services.credits_settle(account=account, reference="task_1", amount=40)

    # The same refund retried 50 times at once: one refund, 50 identical answers.
    same = run_concurrently(
        50, lambda i: services.credits_refund(account=account, reference="refund:1", charge_reference="task_1")
    )
    assert same.errors() == {}
    assert len({entry.pk for entry in same.winners()}) == 1
    assert wallet_totals(account) == (100, 0)

    # 50 different refunds of the (now refunded) charge: none can succeed.
    services.credits_reserve(account=account, amount=40, reference="task_2")
    services.credits_settle(account=account, reference="task_2", amount=40)
    different = run_concurrently(
        50,
        lambda i: services.credits_refund(account=account, reference=f"refund:2:{i}", charge_reference="task_2"),
    )
    assert len(different.winners()) == 1
    assert different.errors() == {"RefundNotAllowedError": 49}
    assert different.unexpected(RefundNotAllowedError) == []
    assert wallet_totals(account) == (100, 0)
    assert LedgerEntry.objects.filter(wallet__account=account, type="refund").count() == 2
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_concurrent_sweepers_and_settles_expire_each_lapsed_hold_once(make_account, repeat):
    account = funded_account(make_account, 1_000)
    now = timezone.now()
    for n in range(100):
        services.credits_reserve(account=account, amount=3, reference=f"task_{n}", lease_seconds=60, now=now)
    lapsed = now + timedelta(seconds=61)

    # 8 sweepers, and 40 workers settling holds 0..39 before their lease lapsed (their clock).
    def op(i: int):
        if i < 8:
            return "sweep", services.credits_expire_lapsed_holds(now=lapsed)
        return "settle", services.credits_settle(account=account, reference=f"task_{i - 8}", amount=2, now=now)

    run = run_concurrently(48, op)

    assert run.unexpected(HoldNotPendingError) == []
    expired_by_sweepers = sum(value for kind, value in run.winners() if kind == "sweep")
    settled = sum(1 for kind, _ in run.winners() if kind == "settle")
    states = Hold.objects.filter(wallet__account=account).values_list("state", flat=True)
    assert list(states).count("pending") == 0
    assert list(states).count("settled") == settled
    assert list(states).count("expired") == expired_by_sweepers == 100 - settled
    assert wallet_totals(account) == (1_000 - 2 * settled, 0)
    assert_ledger_clean()


@pytest.mark.parametrize("repeat", range(stress_repeats()))
@pytest.mark.postgres
@pytest.mark.stress
def test_the_ledger_check_reads_a_consistent_snapshot_while_work_settles(make_account, repeat):
    account = funded_account(make_account, 10_000)
    wallet_id = selectors.wallet_get(account=account).pk

    def op(i: int):
        if i % 5 == 0:
            return "check", selectors.wallet_reconcile(wallet_id=wallet_id)
        services.credits_reserve(account=account, amount=3, reference=f"task_{i}")
        return "settle", services.credits_settle(account=account, reference=f"task_{i}", amount=i % 4)

    run = run_concurrently(150, op)

    assert run.errors() == {}
    checks = [value for kind, value in run.winners() if kind == "check"]
    assert len(checks) == 30
    assert [check.problems for check in checks if not check.ok] == []
    assert_ledger_clean()


def test_concurrent_reserves_keep_the_invariants_on_the_default_database(make_account):
    """Whatever the database (SQLite's IMMEDIATE transactions in the embedded default): no overdraft."""
    operations = 200 if connection.vendor == "postgresql" else 40
    account = funded_account(make_account, operations // 2)

    run = run_concurrently(
        operations,
        lambda i: services.credits_reserve(
            account=account, amount=1, reference=f"task_{i % (operations - 10)}", actor=actor_for("both", account, i)
        ),
    )

    # 10 references are reserved twice (a retry): both calls get the one hold.
    assert run.unexpected(InsufficientCreditsError) == []
    holds = Hold.objects.filter(wallet__account=account).count()
    assert holds == operations // 2
    assert wallet_totals(account) == (operations // 2, operations // 2)
    assert_ledger_clean()
