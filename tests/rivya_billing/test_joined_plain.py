"""The joined reservation and settle (a chat turn's commit and end) on the plain path, every database.

``holds._reserve_joined`` and ``holds._settle_joined`` with the PostgreSQL statements and SQLite's
built ones (``sqlite_holds``, compared with this path in ``test_sqlite_holds.py``) off run in the
caller's transaction with no savepoint: what they write is the caller's transaction's, a refusal is
raised before they write anything (the caller may go on), and outside a transaction each is its own.
On SQLite a settle and a release read the wallet with the hold (one query: the ``IMMEDIATE``
transaction's lock covers both).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from rivya_billing import services
from rivya_billing.conf import billing_settings
from rivya_billing.exceptions import (
    HoldNotPendingError,
    InsufficientCreditsError,
    ReferenceConflictError,
    SpendLimitExceededError,
    StaleHoldError,
)
from rivya_billing.models import Hold, LedgerEntry, SpendLimit, Wallet
from rivya_billing.services import holds
from tests.rivya_billing.conftest import assert_ledger_clean


@pytest.fixture
def plain(rivya_settings: Any) -> None:
    rivya_settings("RIVYA_BILLING", PG_RESERVE=False, PG_SETTLE=False, SQLITE_HOLDS=False)


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"].split()[0].upper() for query in queries.captured_queries]


def wallet_reads(queries: CaptureQueriesContext) -> int:
    return sum(query["sql"].startswith('SELECT "rivya_billing_wallet"') for query in queries.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_a_joined_reservation_and_settle_take_no_savepoint_and_write_what_the_public_ones_do(account, plain):
    services.credits_grant(account=account, amount=100, reference="grant")
    with transaction.atomic(), CaptureQueriesContext(connection) as joined:
        holds._reserve_joined(account=account, amount=30, reference="joined", actor="key_1")
        holds._settle_joined(account=account, reference="joined", amount=12)
    services.credits_reserve(account=account, amount=30, reference="public", actor="key_1")
    services.credits_settle(account=account, reference="public", amount=12)
    assert "SAVEPOINT" not in statements(joined)
    assert "RELEASE" not in statements(joined)
    # The reservation's wallet lock; on PostgreSQL the settle's too (SQLite: in the hold's query).
    assert wallet_reads(joined) == (2 if connection.vendor == "postgresql" else 1)
    fields = ("amount", "state", "usage", "captured", "overrun", "waived", "actor")
    assert Hold.objects.filter(reference="joined").values(*fields).get() == (
        Hold.objects.filter(reference="public").values(*fields).get()
    )
    kinds = {reference: list(LedgerEntry.objects.filter(reference=reference).order_by("sequence").values_list(
        "type", "amount", "balance_delta", "held_delta", "actor")) for reference in ("joined", "public")}  # fmt: skip
    assert (
        kinds["joined"]
        == kinds["public"]
        == [
            ("reserve", 30, 0, 30, "key_1"),
            ("settle", 12, -12, -12, "key_1"),
            ("release", 18, 0, -18, "key_1"),
        ]
    )
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held) == (76, 0)
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_joined_refusal_writes_nothing_and_the_callers_transaction_goes_on(account, plain):
    services.credits_grant(account=account, amount=100, reference="grant")
    services.credits_reserve(account=account, amount=10, reference="released")
    services.credits_release(account=account, reference="released")
    with transaction.atomic():
        with pytest.raises(HoldNotPendingError):
            holds._settle_joined(account=account, reference="released", amount=5)
        holds._reserve_joined(account=account, amount=20, reference="after")  # the transaction is usable
    with pytest.raises(InsufficientCreditsError) as refused, transaction.atomic():
        holds._reserve_joined(account=account, amount=81, reference="too-much")
    assert refused.value.available == 80  # read under the lock, on the plain path
    assert list(Hold.objects.order_by("pk").values_list("reference", "state")) == [
        ("released", "released"),
        ("after", "pending"),
    ]
    assert Wallet.objects.get(account=account).held == 20
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_joined_call_is_its_own(account, plain):
    services.credits_grant(account=account, amount=50, reference="grant")
    hold = holds._reserve_joined(account=account, amount=20, reference="own")
    assert holds._settle_joined(account=account, reference="own", amount=5).captured == 5
    assert (hold.amount, Wallet.objects.get(account=account).balance) == (20, 45)
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_joined_refusal_through_a_limit_counts_nothing_and_the_callers_transaction_goes_on(make_account, plain):
    """Every refusal of a limited reservation comes before the limit's count (mutation caught: the
    count written before the want-of-credits refusal, as the branch first had it: ``used`` 50/50)."""
    account = make_account()
    services.credits_grant(account=account, amount=10, reference="grant")
    limit = services.spend_limit_set(owner_ref="api_key:key_1", credits=60, window="total")
    walletless = make_account()
    with transaction.atomic():
        with pytest.raises(InsufficientCreditsError):
            holds._reserve_joined(account=account, amount=50, reference="too-much", spend_limit=limit.pk)
        with pytest.raises(InsufficientCreditsError):
            holds._reserve_joined(account=walletless, amount=50, reference="no-wallet", spend_limit=limit.pk)
        with pytest.raises(SpendLimitExceededError):
            holds._reserve_joined(account=account, amount=61, reference="over", spend_limit=limit.pk)
        assert SpendLimit.objects.get(pk=limit.pk).used == 0  # in the caller's transaction, which goes on
        holds._reserve_joined(account=account, amount=5, reference="after", spend_limit=limit.pk)
    assert SpendLimit.objects.get(pk=limit.pk).used == 5
    assert list(Hold.objects.values_list("reference", "amount")) == [("after", 5)]
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_joined_settle_refused_through_a_limit_writes_nothing_and_the_callers_transaction_goes_on(
    make_account, plain, now
):
    """Every refusal of a settle (released, lapsed, superseded token, repeat with another amount) comes
    before its writes: the limit's give-back, the wallet, the entries, the hold (mutation caught: the
    limit given back before a refusal is raised, which only a joined caller that goes on keeps)."""
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="grant")
    limit = services.spend_limit_set(owner_ref="api_key:key_1", credits=100, window="total", now=now)
    for reference in ("released", "lapsed", "claimed", "settled"):
        services.credits_reserve(account=account, amount=10, reference=reference, spend_limit=limit.pk, now=now)
    services.credits_release(account=account, reference="released", now=now)
    services.credits_settle(account=account, reference="settled", amount=4, now=now)
    claimed = services.credits_hold_renew(account=account, reference="claimed", lease_seconds=3600, now=now)
    late = now + timedelta(seconds=billing_settings.HOLD_LEASE_SECONDS + 1)
    before = ledger_state(limit)
    with transaction.atomic():
        with pytest.raises(HoldNotPendingError):
            holds._settle_joined(account=account, reference="released", amount=5, now=now)
        with pytest.raises(StaleHoldError):
            holds._settle_joined(account=account, reference="lapsed", amount=5, now=late)
        with pytest.raises(StaleHoldError):
            holds._settle_joined(
                account=account, reference="claimed", amount=5, lease_token=claimed.lease_token - 1, now=now
            )
        with pytest.raises(ReferenceConflictError):
            holds._settle_joined(account=account, reference="settled", amount=5, now=now)
        assert ledger_state(limit) == before  # in the caller's transaction, which goes on
        holds._settle_joined(account=account, reference="claimed", amount=5, now=now)
    assert SpendLimit.objects.get(pk=limit.pk).used == before[0] - 5 == 19  # lapsed 10 + claimed 5 + settled 4
    assert_ledger_clean()


def ledger_state(limit: SpendLimit) -> tuple[Any, ...]:
    wallet = Wallet.objects.get()
    holds_now = list(Hold.objects.order_by("pk").values_list("state", "captured", "usage"))
    used = SpendLimit.objects.get(pk=limit.pk).used
    return used, wallet.balance, wallet.held, wallet.last_sequence, LedgerEntry.objects.count(), holds_now


@pytest.mark.postgres
@pytest.mark.usefixtures("thread_connections")
def test_a_repeat_found_under_the_limits_lock_counts_nothing(make_account, plain):
    """Two reservations of one reference through a limit: the second passes the first repeat check,
    waits on the limit's lock, then finds the first's hold (mutation caught: the limit counted before
    the repeat check under the locks, ``used`` 20 for one hold of 10)."""
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="grant")
    limit = services.spend_limit_set(owner_ref="api_key:key_1", credits=50, window="total")
    second: list[Any] = []

    def reserve_again() -> None:
        try:
            second.append(services.credits_reserve(account=account, amount=10, reference="r", spend_limit=limit.pk))
        except BaseException as error:  # reported by the assertion below
            second.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=reserve_again)
    with transaction.atomic():
        first = holds._reserve_joined(account=account, amount=10, reference="r", spend_limit=limit.pk)
        thread.start()
        deadline = time.monotonic() + 20
        while not waiting_on_a_lock() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_on_a_lock(), ("the second reservation never waited on the limit's lock", second)
    thread.join(30)
    assert [getattr(outcome, "pk", outcome) for outcome in second] == [first.pk]
    assert SpendLimit.objects.get(pk=limit.pk).used == 10
    assert_ledger_clean()


def waiting_on_a_lock() -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the view is read once per transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0
