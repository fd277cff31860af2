"""The one-statement settle (``services/pg_settle``) under real concurrency on PostgreSQL.

Threads, each on its own connection, released together by a barrier
(``tests/rivya_billing/concurrency.py``), settle one hold at once, and many holds
of one wallet at once while others reserve from it. ``path="mixed"`` sends every
other call through the portable path (``holds._settle_locked``), as during a
deploy that switches ``PG_SETTLE``: both take the hold, limit and wallet locks in
the same order, so they neither deadlock nor double-charge. After every run the
ledger reconciles (``rivya_ledger_check``) and sequences run without gaps.
"""

from __future__ import annotations

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
