"""Early lock release: wallet writes commit asynchronously, and are flushed before anyone acts on them.

What matters to a caller is that nothing returns, and no ``on_commit`` callback
runs, before the work is flushed to disk. These tests watch the WAL positions
PostgreSQL reports: the position written just before the commit must be flushed
by the time the service returns or the first callback runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from rivya_billing import services
from rivya_billing.exceptions import InsufficientCreditsError
from rivya_billing.services import durability
from tests.rivya_billing.conftest import assert_ledger_clean

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def scalar(sql: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def flushed_past(lsn: str) -> bool:
    return scalar(f"SELECT pg_current_wal_flush_lsn() >= '{lsn}'::pg_lsn")


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every WAL flush the services ask for, recorded as the write position before it."""
    calls: list[str] = []
    real = durability.wal_flush

    def recorded() -> None:
        calls.append(scalar("SELECT pg_current_wal_insert_lsn()::text"))
        real()

    monkeypatch.setattr(durability, "wal_flush", recorded)
    return calls


@pytest.fixture
def funded(make_account: Any) -> Any:
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="grant:1")
    return account


def test_a_reservation_outside_a_transaction_is_flushed_before_it_returns(funded, flushes):
    services.credits_reserve(account=funded, amount=5, reference="task_1")

    assert len(flushes) == 1
    assert flushed_past(flushes[0])
    assert scalar("SHOW synchronous_commit") == "on"  # only the reservation's own transaction was asynchronous
    assert_ledger_clean()


def test_a_reservation_in_a_transaction_commits_asynchronously_and_is_flushed_before_its_callbacks(funded, flushes):
    seen: list[tuple[str, bool]] = []
    with transaction.atomic():
        # A callback added before the reservation still runs after the flush.
        transaction.on_commit(lambda: seen.append(("earlier callback", flushed_past(last_write[0]))))
        services.credits_reserve(account=funded, amount=5, reference="task_1")
        assert scalar("SHOW synchronous_commit") == "off"
        last_write = [scalar("SELECT pg_current_wal_insert_lsn()::text")]
        transaction.on_commit(lambda: seen.append(("later callback", flushed_past(last_write[0]))))
        assert flushes == []  # nothing before the commit

    assert len(flushes) == 1
    assert seen == [("earlier callback", True), ("later callback", True)]
    assert scalar("SHOW synchronous_commit") == "on"


def test_several_wallet_writes_in_one_transaction_share_one_flush(funded, flushes):
    with transaction.atomic():
        services.credits_reserve(account=funded, amount=5, reference="task_1")
        services.credits_settle(account=funded, reference="task_1", amount=3)
        services.credits_grant(account=funded, amount=10, reference="grant:2")

    assert len(flushes) == 1
    assert flushed_past(flushes[0])
    assert_ledger_clean()


def test_every_posting_service_flushes_before_it_returns(funded, flushes):
    services.credits_reserve(account=funded, amount=5, reference="task_1")
    services.credits_settle(account=funded, reference="task_1", amount=3)
    services.credits_refund(account=funded, reference="refund:1", charge_reference="task_1")

    assert len(flushes) == 3
    assert all(flushed_past(lsn) for lsn in flushes)


def test_a_rolled_back_write_asks_for_no_flush(funded, flushes):
    def failing_work() -> None:
        with transaction.atomic():
            services.credits_reserve(account=funded, amount=5, reference="task_1")
            raise RuntimeError("the caller's work failed")

    with pytest.raises(RuntimeError):
        failing_work()

    assert flushes == []
    assert scalar("SELECT count(*) FROM rivya_billing_hold WHERE reference = 'task_1'") == 0


def test_a_refused_reservation_asks_for_no_flush(funded, flushes):
    with pytest.raises(InsufficientCreditsError):
        services.credits_reserve(account=funded, amount=500, reference="task_1")

    assert flushes == []


@pytest.mark.rivya_settings({"RIVYA_BILLING": {"EARLY_LOCK_RELEASE": False}})
def test_switched_off_every_wallet_write_commits_synchronously(funded, flushes):
    with transaction.atomic():
        services.credits_reserve(account=funded, amount=5, reference="task_1")
        services.credits_settle(account=funded, reference="task_1", amount=3)
        assert scalar("SHOW synchronous_commit") == "on"
    services.credits_reserve(account=funded, amount=5, reference="task_2")

    assert flushes == []
    assert_ledger_clean()
