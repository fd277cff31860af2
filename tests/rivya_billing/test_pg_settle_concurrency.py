"""The one-statement settle (``services/pg_settle``) under real concurrency on PostgreSQL.

Threads, each on its own connection, released together by a barrier
(``tests/rivya_billing/concurrency.py``), settle one hold at once, and many holds
of one wallet at once while others reserve from it, and with every other writer of the
wallet (release, the lapsed-hold sweeper, grant expiry, refund, reserve in one limit). ``path="mixed"`` sends every
other call through the portable path (``holds._settle_locked``), as during a
deploy that switches ``PG_SETTLE``: both take the hold, limit and wallet locks in
the same order, so they neither deadlock nor double-charge. After every run the
ledger reconciles (``rivya_ledger_check``) and sequences run without gaps.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from rivya_billing import services
from rivya_billing.exceptions import ReferenceConflictError
from rivya_billing.models import CreditGrant, Hold, LedgerEntry, SpendLimit, Wallet
from rivya_billing.services import holds, pg_settle
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import assert_ledger_clean, stress_repeats

pytestmark = [
    pytest.mark.usefixtures("thread_connections"),
    pytest.mark.postgres,
    pytest.mark.stress,
    pytest.mark.parametrize("repeat", range(stress_repeats())),
    pytest.mark.parametrize("path", ["function", "mixed"]),
]


def settle(path: str, i: int, **kwargs) -> Hold:
    if path == "mixed" and i % 2:
        return holds._settle_locked(actor="", lease_token=None, now=timezone.now(), **kwargs)
    return services.credits_settle(**kwargs)


def assert_gap_free(wallet: Wallet) -> None:
    sequences = list(LedgerEntry.objects.filter(wallet=wallet).order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, wallet.last_sequence + 1))


def test_threads_settling_one_hold_at_once_charge_it_once(make_account, rivya_settings, path, repeat):
    rivya_settings("RIVYA_BILLING", PG_SETTLE=True)
    assert pg_settle.enabled()
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="grant")
    services.credits_reserve(account=account, amount=30, reference="task_1")

    # 40 callers: most report 12 (repeats of one settle), every fifth reports 13 (a conflict).
    run = run_concurrently(
        40, lambda i: settle(path, i, account=account, reference="task_1", amount=13 if i % 5 == 0 else 12)
    )

    winners = run.winners()
    assert run.unexpected(ReferenceConflictError) == []
    usage = winners[0].usage
    assert {hold.usage for hold in winners} == {usage}
    assert {(hold.pk, hold.state, hold.captured) for hold in winners} == {(winners[0].pk, "settled", usage)}
    assert len(winners) == (32 if usage == 12 else 8)
    assert run.errors() == {"ReferenceConflictError": 40 - len(winners)}
    lines = LedgerEntry.objects.filter(hold=winners[0].pk).order_by("sequence").values_list("type", "amount")
    assert list(lines) == [("reserve", 30), ("settle", usage), ("release", 30 - usage)]
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held) == (100 - usage, 0)
    assert_gap_free(wallet)
    assert_ledger_clean()


def test_threads_settling_many_holds_of_one_wallet_keep_it_exact(make_account, rivya_settings, path, repeat):
    """60 holds settled at once (below, at and above their amount) while 20 more are reserved."""
    rivya_settings("RIVYA_BILLING", PG_SETTLE=True, OVERRUN_POLICY="available")
    account = make_account()
    now = timezone.now()
    services.credits_grant(account=account, amount=1_000, reference="plain")
    services.credits_grant(account=account, amount=300, reference="late", expires_at=now + timedelta(days=9))
    services.credits_grant(account=account, amount=200, reference="soon", expires_at=now + timedelta(days=3))
    limit = services.spend_limit_set(owner_ref=f"settle-race:{account.pk}", credits=10_000, window="total")
    for n in range(60):
        spend_limit = limit.pk if n % 3 == 0 else None
        services.credits_reserve(account=account, amount=10, reference=f"task_{n}", spend_limit=spend_limit)
    usage = {n: (4, 10, 15)[n % 3] for n in range(60)}  # partial, full, above the hold (an overrun)

    def op(i: int):
        if i >= 60:
            return services.credits_reserve(account=account, amount=7, reference=f"new_{i}")
        return settle(path, i, account=account, reference=f"task_{i}", amount=usage[i])

    run = run_concurrently(80, op)

    assert run.errors() == {}
    settled = Hold.objects.filter(wallet__account=account, reference__startswith="task_")
    assert set(settled.values_list("state", flat=True)) == {"settled"}
    charged = sum(min(u, 10) + max(0, u - 10) for u in usage.values())  # ample credits: every overrun charged
    assert settled.aggregate(total=Sum("captured") + Sum("overrun"))["total"] == charged
    for hold in settled:  # one resolution per hold: nothing charged twice
        types = sorted(LedgerEntry.objects.filter(hold=hold).values_list("type", flat=True))
        expected = {
            4: ["release", "reserve", "settle"],
            10: ["reserve", "settle"],
            15: ["overrun", "reserve", "settle"],
        }
        assert types == expected[hold.usage]
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held) == (1_500 - charged, 20 * 7)
    lines = sum(1 if u == 10 else 2 for u in usage.values())  # settle, and a release or an overrun
    assert wallet.last_sequence == 3 + 60 + lines + 20  # grants, reserves, settles, new reserves
    assert_gap_free(wallet)
    # Expiring grants, soonest expiry first: "soon" (200) drained before "late" is touched.
    buckets = dict(CreditGrant.objects.filter(wallet=wallet).values_list("reference", "drawn"))
    assert buckets == {"soon": 200, "late": min(300, charged - 200)}
    limited = settled.filter(spend_limit=limit.pk).aggregate(total=Sum("captured") + Sum("overrun"))["total"]
    assert SpendLimit.objects.get(pk=limit.pk).used == limited
    assert_ledger_clean()


def test_settles_racing_every_other_writer_of_the_wallet_keep_it_exact(make_account, rivya_settings, path, repeat):
    """Settles at once with releases, the lapsed-hold sweeper, grant expiry, refunds and reserves in one limit."""
    rivya_settings("RIVYA_BILLING", PG_SETTLE=True, OVERRUN_POLICY="available")
    account = make_account()
    now = timezone.now()
    services.credits_grant(account=account, amount=2_000, reference="plain")
    for n in range(6):
        expires_at = now + timedelta(seconds=1 + n)
        services.credits_grant(account=account, amount=50, reference=f"expiring_{n}", expires_at=expires_at, now=now)
    limit = services.spend_limit_set(owner_ref=f"settle-race-all:{account.pk}", credits=100_000, window="total")
    for n in range(40):  # every fifth with a lease that lapses before the race: the sweeper's
        spend_limit = limit.pk if n % 2 else None
        lease = 1 if n % 5 == 0 else 600
        services.credits_reserve(
            account=account, amount=10, reference=f"task_{n}", spend_limit=spend_limit, lease_seconds=lease
        )
    for n in range(5):  # charges to refund
        services.credits_reserve(account=account, amount=10, reference=f"charge_{n}")
        services.credits_settle(account=account, reference=f"charge_{n}", amount=10)
    time.sleep(1.2)
    later = timezone.now() + timedelta(seconds=10)  # every expiring grant has expired

    def op(i: int):
        if i < 40 and i % 7 == 3:
            return services.credits_release(account=account, reference=f"task_{i}")
        if i < 40:
            return settle(path, i, account=account, reference=f"task_{i}", amount=(4, 10, 17)[i % 3])
        if i < 44:
            return services.credits_expire_lapsed_holds()
        if i < 48:
            return services.credits_expire_grants(now=later)
        if i < 53:
            charge = f"charge_{i - 48}"
            return services.credits_refund(account=account, reference=f"refund_{i}", charge_reference=charge, amount=3)
        return services.credits_reserve(account=account, amount=7, reference=f"new_{i}", spend_limit=limit.pk)

    run = run_concurrently(70, op)

    # Lapsed holds: stale to a settle, or expired by the sweeper first (then not pending).
    assert set(run.errors()) <= {"StaleHoldError", "HoldNotPendingError"}, [o.error for o in run if not o.ok]
    # A lapsed hold is refused a settle and is expired by the sweeper (or skipped, while locked).
    states = {"settled": set(), "released": set(), "lapsed": set()}
    for n in range(40):
        states["lapsed" if n % 5 == 0 else "released" if n % 7 == 3 else "settled"].add(f"task_{n}")
    holds_now = {hold.reference: hold for hold in Hold.objects.filter(wallet__account=account)}
    assert {ref for ref in states["settled"] if holds_now[ref].state == "settled"} == states["settled"]
    assert {ref for ref in states["released"] if holds_now[ref].state == "released"} == states["released"]
    assert {holds_now[ref].state for ref in states["lapsed"]} <= {"expired", "pending", "released"}
    for ref in states["settled"]:  # ample credits: every overrun charged, once
        hold = holds_now[ref]
        assert (hold.captured + hold.overrun, hold.waived) == (hold.usage, 0)
    pending = [hold.amount for hold in holds_now.values() if hold.state == "pending"]
    assert len(pending) >= 17  # the new reservations, all made
    wallet = Wallet.objects.get(account=account)
    assert wallet.held == sum(pending)
    assert_gap_free(wallet)
    assert_ledger_clean()
