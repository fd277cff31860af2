"""``rivya_ledger_check`` passes a clean ledger and names the wallet of every hand-made corruption.

Corruptions are made with raw SQL, the way a bad script or a manual fix would
make them; on PostgreSQL that needs the append-only trigger switched off for
the session first (``session_replication_role = replica``), which is itself
tested: without it the database refuses.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from rivya_billing import services
from rivya_billing.models import Hold, LedgerEntry, Wallet
from rivya_billing.selectors import wallet_reconcile

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger(make_account, now):
    """Two wallets with a bit of everything: grants, a settled, a released, a pending and an expired hold."""
    accounts = [make_account(), make_account()]
    for account in accounts:
        services.credits_grant(account=account, amount=100, reference="grant:1", now=now)
        services.credits_reserve(account=account, amount=30, reference="task_1", now=now)
        services.credits_settle(account=account, reference="task_1", amount=20, now=now)
        services.credits_refund(account=account, reference="refund:1", charge_reference="task_1", amount=5, now=now)
        services.credits_reserve(account=account, amount=10, reference="task_2", now=now)
        services.credits_release(account=account, reference="task_2", now=now)
        services.credits_reserve(account=account, amount=15, reference="task_3", now=now)
        services.credits_reserve(account=account, amount=5, reference="task_4", lease_seconds=1, now=now)
        services.credits_hold_expire(account=account, reference="task_4", now=now + timedelta(seconds=2))
        services.credits_adjust(account=account, amount=-3, reference="adj:1", reason="correction", now=now)
    return accounts


def run_check() -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rivya_ledger_check", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def raw(sql: str, params: list | None = None) -> None:
    """Run SQL with the append-only trigger off for this statement (PostgreSQL needs it for entry edits)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params or [])


def wallet_of(account) -> Wallet:
    return Wallet.objects.get(account=account)


def assert_drift(wallet: Wallet, fragment: str) -> None:
    with pytest.raises(CommandError) as failure:
        run_check()
    assert f"wallet {wallet.pk} " in str(failure.value)
    problems = wallet_reconcile(wallet_id=wallet.pk).problems
    assert any(fragment in problem for problem in problems), problems


def test_a_consistent_ledger_passes(ledger):
    out, err = run_check()
    assert "Ledger consistent: 2 wallets" in out
    assert err == ""
    for account in ledger:
        check = wallet_reconcile(wallet_id=wallet_of(account).pk)
        assert (check.ok, check.entries) == (True, 11)


def test_the_command_exits_non_zero_naming_the_wallet(ledger, capsys):
    from rivya_billing.management.commands.rivya_ledger_check import Command

    wallet = wallet_of(ledger[1])
    Wallet.objects.filter(pk=wallet.pk).update(balance=wallet.balance + 1)
    with pytest.raises(SystemExit) as exit_:
        Command().run_from_argv(["manage.py", "rivya_ledger_check", "--skip-checks"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert f"DRIFT wallet {wallet.pk} (account {ledger[1].pk}): balance" in err
    assert f"Ledger drift in 1 of 2 wallets: wallet {wallet.pk} " in err


def test_balance_drift_is_detected(ledger):
    wallet = wallet_of(ledger[0])
    Wallet.objects.filter(pk=wallet.pk).update(balance=wallet.balance + 7)
    assert_drift(wallet, "balance 89 but entries add up to 82")
    assert wallet_reconcile(wallet_id=wallet_of(ledger[1]).pk).ok


def test_held_that_no_hold_explains_is_detected(ledger):
    wallet = wallet_of(ledger[0])
    Hold.objects.filter(wallet=wallet, reference="task_3").update(amount=14)
    assert_drift(wallet, "pending holds add up to 14")


def test_a_sequence_gap_is_detected(ledger):
    wallet = wallet_of(ledger[1])
    raw(f"UPDATE {LedgerEntry._meta.db_table} SET sequence = 99 WHERE wallet_id = %s AND sequence = 11", [wallet.pk])
    assert_drift(wallet, "expected #11, found #99")


def test_an_edited_entry_amount_is_detected(ledger):
    wallet = wallet_of(ledger[0])
    raw(
        f"UPDATE {LedgerEntry._meta.db_table} SET balance_after = balance_after + 1 "
        "WHERE wallet_id = %s AND sequence = 1",
        [wallet.pk],
    )
    assert_drift(wallet, "entry #1")


def test_a_deleted_entry_is_detected(ledger):
    wallet = wallet_of(ledger[0])
    raw(f"DELETE FROM {LedgerEntry._meta.db_table} WHERE wallet_id = %s AND type = 'release'", [wallet.pk])
    assert_drift(wallet, "sequence broken")


def test_a_hold_missing_its_lines_is_detected(ledger):
    wallet = wallet_of(ledger[0])
    Hold.objects.filter(wallet=wallet, reference="task_2").update(state="expired")
    assert_drift(wallet, "expected {'reserve': 10, 'expire': 10}")


def test_a_refund_the_hold_does_not_know_is_detected(ledger):
    wallet = wallet_of(ledger[0])
    Hold.objects.filter(wallet=wallet, reference="task_1").update(refunded=0)
    assert_drift(wallet, "records 0 refunded of 20 charged")


@pytest.mark.postgres
def test_postgresql_refuses_raw_update_and_delete_of_entries(ledger):
    entry = LedgerEntry.objects.filter(wallet=wallet_of(ledger[0])).order_by("sequence").first()
    for sql in (
        f"UPDATE {LedgerEntry._meta.db_table} SET amount = 1000 WHERE id = %s",
        f"DELETE FROM {LedgerEntry._meta.db_table} WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [entry.pk])
    assert LedgerEntry.objects.get(pk=entry.pk).amount == 100
    run_check()


@pytest.mark.postgres
def test_postgresql_refuses_deleting_wallets_and_holds(ledger):
    wallet = wallet_of(ledger[0])
    for table, pk in ((Wallet._meta.db_table, wallet.pk), (Hold._meta.db_table, Hold.objects.first().pk)):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])
    run_check()


@pytest.mark.postgres
def test_postgresql_check_constraints_refuse_an_overdrawn_wallet(ledger):
    wallet = wallet_of(ledger[0])
    with pytest.raises(DatabaseError, match="available_gte_0"), transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(held=wallet.balance + 1)
