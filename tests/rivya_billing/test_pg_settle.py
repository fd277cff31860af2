"""The one-statement settle (``services/pg_settle``) against the portable path, on every database.

The same settles run with ``PG_SETTLE`` on and off and must leave the same rows
(wallet, ledger lines, holds, expiring grants, spend limit, low-balance notices),
return the same holds, raise the same errors, and do the same after the write
(the WAL flush of early lock release, then the metrics, once committed). On
PostgreSQL that compares the PL/pgSQL function with the ORM's row-lock path; on
SQLite both settings take the portable path (the function does not exist there),
which the test also checks. The PostgreSQL-only tests check that the function in
the database is ``pg_settle.sql``'s and that its INSERT names every ledger column;
``test_pg_settle_concurrency.py`` races it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from rivya_billing import migrations, services
from rivya_billing.exceptions import BillingError, InvalidAmountError, StaleHoldError
from rivya_billing.models import CreditGrant, Hold, LedgerEntry, LowBalanceNotice, SpendLimit, Wallet
from rivya_billing.services import durability, holds, ledger, pg_settle
from tests.rivya_billing.conftest import T0, assert_ledger_clean
from tests.rivya_billing.test_pg_reserve import Rollback, row

T1 = T0 + timedelta(minutes=5)


def outcome(call: Any, events: list[Any]) -> Any:
    """What one settle returned or raised, and what it did after its write (flush, metrics) by commit time."""
    events.clear()
    try:
        hold = call()
    except BillingError as error:
        result = (type(error).__name__, str(error), getattr(error, "state", None), getattr(error, "param", None))
        return result, list(events)
    stored = Hold.objects.get(pk=hold.pk)
    assert row(hold) == row(stored)  # the returned hold is what the ORM loads
    assert hold._state.adding is False  # saved: save() updates
    assert hold._state.db == stored._state.db
    assert type(hold.resolved_at) is type(stored.resolved_at)
    return ("hold", row(hold)), list(events)


def settles(make_account: Any, tag: str, events: list[Any]) -> list[Any]:
    """Every kind of outcome a settle has, in one run; returns what each did and the rows after."""
    account, other = make_account(), make_account()
    services.credits_grant(account=account, amount=60, reference="plain", now=T0)
    services.credits_grant(account=account, amount=30, reference="late", expires_at=T0 + timedelta(days=9), now=T0)
    services.credits_grant(account=account, amount=20, reference="soon", expires_at=T0 + timedelta(days=3), now=T0)
    services.credits_grant(account=other, amount=10, reference="plain", now=T0)
    services.credits_alert_set(account=account, low_balance_threshold=50)  # crossed and re-armed on the way
    limit = services.spend_limit_set(owner_ref=f"pg-settle:{tag}", credits=100, window="day", now=T0)
    for reference, amount, kwargs in [
        ("full", 10, {}),
        ("partial", 10, {"spend_limit": limit.pk}),
        ("above", 10, {"spend_limit": limit.pk}),
        ("unused", 5, {}),
        ("released", 5, {}),
        ("lapsed", 5, {"lease_seconds": 60}),
        ("expired", 5, {"lease_seconds": 60}),
        ("claimed", 5, {}),
        ("rolled", 3, {}),
        ("caller", 3, {}),
        ("last", 6, {}),
    ]:
        services.credits_reserve(account=account, amount=amount, reference=reference, actor="key_r", now=T0, **kwargs)
    services.credits_reserve(account=other, amount=4, reference="theirs", now=T0)
    services.credits_release(account=account, reference="released", now=T0)
    services.credits_hold_expire(account=account, reference="expired", now=T0 + timedelta(minutes=2))
    services.credits_hold_renew(account=account, reference="claimed", now=T0)  # lease token 1

    def settle(reference: str, amount: int, who: Any = account, **kwargs: Any) -> Any:
        kwargs.setdefault("now", T1)
        return outcome(
            lambda: services.credits_settle(account=who, reference=reference, amount=amount, **kwargs), events
        )

    def in_caller_transaction(reference: str, amount: int, *, commit: bool) -> Any:
        try:
            with transaction.atomic():
                result = settle(reference, amount)
                services.credits_grant(account=account, amount=1, reference=f"after:{reference}", now=T0)
                if not commit:
                    raise Rollback
        except Rollback:
            pass
        return result, list(events)  # the events once the caller's transaction ended

    results = [
        settle("full", 10),  # full capture
        settle("full", 10),  # a repeat returns the settled hold, doing nothing
        settle("full", 9),  # a repeat with another amount conflicts
        settle("partial", 4, actor="user:7"),  # the rest released, and given back to the spend limit
        settle("above", 25),  # above the hold: waived ("cap") or charged from available ("available")
        settle("unused", 0),  # nothing used: all released
        settle("released", 1),  # released: not pending
        settle("lapsed", 1),  # its lease lapsed: stale
        settle("expired", 1),  # the sweeper expired it: stale
        settle("claimed", 1, lease_token=0),  # superseded claim: stale
        settle("claimed", 2, lease_token=1),  # its claimant settles
        settle("theirs", 4),  # another account's hold: not found
        settle("nothing", 1),  # no such hold
        in_caller_transaction("rolled", 3, commit=False),  # the caller rolls back: nothing happened
        settle("rolled", 2),
        in_caller_transaction("released", 1, commit=True),  # refused, and the caller's transaction goes on
        in_caller_transaction("caller", 3, commit=True),
        settle("last", 500),  # far above what is available
    ]
    wallet = Wallet.objects.get(account=account)
    unique = {"account_id": None, "owner_ref": None, "created_at": None}  # per run, not per path
    results.append(row(wallet) | unique)
    results.append([row(e) for e in LedgerEntry.objects.filter(wallet=wallet).order_by("sequence")])
    results.append([row(h) for h in Hold.objects.filter(wallet=wallet).order_by("pk")])
    results.append([row(g) for g in CreditGrant.objects.filter(wallet=wallet).order_by("pk")])
    results.append(row(SpendLimit.objects.get(pk=limit.pk)) | unique)
    results.append([row(n) | unique for n in LowBalanceNotice.objects.filter(wallet=wallet).order_by("pk")])
    return results


@pytest.mark.parametrize("policy", ["cap", "available"])
@pytest.mark.django_db(transaction=True)
def test_the_fast_path_settles_exactly_what_the_portable_path_does(make_account, rivya_settings, monkeypatch, policy):
    rivya_settings("RIVYA_BILLING", OVERRUN_POLICY=policy, PG_SETTLE=False)
    assert not pg_settle.enabled()
    portable = run_recorded(make_account, monkeypatch, f"portable-{policy}", unused=(pg_settle, "settle"))
    rivya_settings("RIVYA_BILLING", PG_SETTLE=True)
    assert pg_settle.enabled() is (connection.vendor == "postgresql")
    plain = (holds, "_settle_locked") if connection.vendor == "postgresql" else (pg_settle, "settle")
    fast = run_recorded(make_account, monkeypatch, f"fast-{policy}", unused=plain)

    for number, (got, expected) in enumerate(zip(fast, portable, strict=True)):
        assert got == expected, number
    kinds = [result[0][0] for result in fast[:13]]
    stale = ["StaleHoldError"] * 3
    missing = ["HoldNotFoundError"] * 2
    assert kinds == [
        "hold",
        "hold",
        "ReferenceConflictError",
        *["hold"] * 3,
        "HoldNotPendingError",
        *stale,
        "hold",
        *missing,
    ]
    # Something happened after each write: its metrics, and on PostgreSQL the flush before them.
    flushed = ["flush"] if connection.vendor == "postgresql" else []
    assert fast[0][1] == [*flushed, ("settle", 10)]
    assert fast[1][1] == []  # the repeat did nothing
    assert fast[3][1] == [*flushed, ("settle", 4), ("release", 6)]
    assert fast[13][1] == []  # rolled back: no metrics
    # The wallet's low-balance trigger ran on the settles too: "cap" only gives credits back (the
    # alert re-arms), "available" charges overruns (two more crossings, each a notice).
    assert fast[-6]["low_balance_armed"] is (policy == "cap")
    assert len(fast[-1]) == (1 if policy == "cap" else 3)
    # Spent: 37 credits ("cap"), everything ("available"); the grant expiring soonest is drawn first.
    buckets = [(grant["reference"], grant["remaining"], grant["drawn"]) for grant in fast[-3]]
    assert buckets == ([("late", 13, 17), ("soon", 0, 20)] if policy == "cap" else [("late", 0, 30), ("soon", 0, 20)])
    assert_ledger_clean()


def run_recorded(make_account: Any, monkeypatch: Any, tag: str, *, unused: tuple[Any, str]) -> list[Any]:
    """``settles``, recording the WAL flushes and metrics of each settle in the order they run.

    ``unused`` (module, name): the settle function of the path this run must not take.
    """
    recorded: list[Any] = []
    flush = durability.wal_flush

    def wal_flush() -> None:
        recorded.append("flush")
        flush()

    def not_this_path(**kwargs: Any) -> Any:
        raise AssertionError(f"{unused[1]} is not this run's path")

    with monkeypatch.context() as patch:
        patch.setattr(*unused, not_this_path)
        patch.setattr(durability, "wal_flush", wal_flush)
        patch.setattr(
            ledger, "ledger_operation_observe", lambda *, operation, credits: recorded.append((operation, credits))
        )
        return settles(make_account, tag, recorded)


@pytest.mark.django_db(transaction=True)
def test_a_joined_settle_settles_exactly_what_the_public_one_does(make_account, rivya_settings, monkeypatch):
    """``holds._settle_joined`` (a chat turn's end, a generation's finish) takes no savepoint in a caller's
    transaction: the same rows, results, errors and after-commit work as the public settle."""
    rivya_settings("RIVYA_BILLING", PG_SETTLE=True)
    plain = (holds, "_settle_locked") if connection.vendor == "postgresql" else (pg_settle, "settle")
    public = run_recorded(make_account, monkeypatch, "public", unused=plain)
    monkeypatch.setattr(services, "credits_settle", holds._settle_joined)
    joined = run_recorded(make_account, monkeypatch, "joined", unused=plain)
    for number, (got, expected) in enumerate(zip(joined, public, strict=True)):
        assert got == expected, number


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_joined_settle_is_one_statement_in_the_callers_transaction(make_account, django_assert_num_queries):
    account = make_account()
    services.credits_grant(account=account, amount=10, reference="grant")
    for reference in ("public", "joined"):
        services.credits_reserve(account=account, amount=5, reference=reference)
    with transaction.atomic(), django_assert_num_queries(3) as queries:  # public: its savepoint kept
        services.credits_settle(account=account, reference="public", amount=5)
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["SAVEPOINT", "SELECT", "RELEASE"]
    with transaction.atomic(), django_assert_num_queries(1):
        holds._settle_joined(account=account, reference="joined", amount=5)
    assert Hold.objects.get(reference="joined").captured == 5


def sql_function_bodies() -> dict[str, str]:
    text = pg_settle.SQL_FILE.read_text()
    return dict(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(.*?\$\$(.*?)\$\$ LANGUAGE", text, re.DOTALL))


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_function_in_the_database_is_the_sql_files():
    bodies = sql_function_bodies()
    assert set(bodies) == {"rivya_billing_settle"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname, prosrc FROM pg_proc WHERE proname = 'rivya_billing_settle'")
        installed = cursor.fetchall()
    assert len(installed) == 1  # one signature: no stale overload left behind
    assert dict(installed) == bodies


def test_the_sql_names_every_ledger_column():
    text = pg_settle.SQL_FILE.read_text()
    lists = re.findall(r"INSERT INTO rivya_billing_ledgerentry(?: AS \w+)? \((.*?)\)", text, re.DOTALL)
    assert len(lists) == 1
    columns = {field.column for field in LedgerEntry._meta.concrete_fields if not field.primary_key}
    assert {name.strip() for name in lists[0].split(",")} == columns


def test_the_newest_migration_that_loads_the_file_names_its_hash():
    """An edit of the SQL needs a migration that loads it again, or existing databases keep the old one."""
    recorded = [
        getattr(import_module(f"rivya_billing.migrations.{path.stem}"), "SETTLE_SQL_SHA256", None)
        for path in sorted(Path(migrations.__file__).parent.glob("0*.py"))
    ]
    newest = [sha for sha in recorded if sha][-1]
    assert hashlib.sha256(pg_settle.SQL_FILE.read_bytes()).hexdigest() == newest


BOTH_PATHS = pytest.mark.parametrize("fast", [True, False], ids=["pg_settle", "plain"])


def other_session() -> psycopg.Connection:
    """A second PostgreSQL session (autocommit), as another process would have."""
    params = {**connection.get_connection_params(), "autocommit": True}
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@BOTH_PATHS
def test_a_settle_that_fails_in_the_database_leaves_the_callers_transaction_usable(make_account, rivya_settings, fast):
    """A lock timeout inside a caller's transaction: the caller catches it and goes on, on both paths."""
    rivya_settings("RIVYA_BILLING", PG_SETTLE=fast)
    assert pg_settle.enabled() is fast
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="g")
    services.credits_reserve(account=account, amount=10, reference="h")
    wallet_id = Wallet.objects.get(account=account).pk
    with other_session() as other:
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM rivya_billing_wallet WHERE id = %s FOR NO KEY UPDATE", [wallet_id])
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '300ms'")
            with pytest.raises(OperationalError, match="lock timeout"):
                services.credits_settle(account=account, reference="h", amount=5)
            other.execute("ROLLBACK")
            # The caller's transaction goes on: the same settle again, then another write.
            services.credits_settle(account=account, reference="h", amount=5)
            services.credits_grant(account=account, amount=1, reference="after", now=T0)
    assert Hold.objects.get(reference="h", wallet_id=wallet_id).captured == 5
    assert Wallet.objects.get(pk=wallet_id).balance == 100 + 1 - 5
    assert_ledger_clean()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@BOTH_PATHS
def test_a_refused_settle_does_not_keep_the_hold_locked(make_account, rivya_settings, fast):
    """A stale settle caught inside a caller's transaction; meanwhile another process locks the hold."""
    rivya_settings("RIVYA_BILLING", PG_SETTLE=fast)
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="g", now=T0)
    services.credits_reserve(account=account, amount=10, reference="h", lease_seconds=1, now=T0)
    with transaction.atomic(), other_session() as other:
        with pytest.raises(StaleHoldError):
            services.credits_settle(account=account, reference="h", amount=5, now=T1)  # its lease lapsed
        other.execute("SET lock_timeout = '300ms'")
        with other.transaction():  # what credits_release and the sweeper lock first
            locked = other.execute(
                "SELECT h.id FROM rivya_billing_hold AS h JOIN rivya_billing_wallet AS w ON w.id = h.wallet_id "
                "WHERE w.account_id = %s AND h.reference = 'h' FOR NO KEY UPDATE OF h",
                [account.pk],
            ).fetchall()
    assert len(locked) == 1


@pytest.mark.django_db(transaction=True)
@BOTH_PATHS
def test_usage_beyond_the_ledgers_integers_is_refused_alike(make_account, rivya_settings, fast):
    """Usage above 2**63 - 1 (the columns' bigint) is an invalid amount on every path; at it, a settle."""
    rivya_settings("RIVYA_BILLING", PG_SETTLE=fast, OVERRUN_POLICY="cap")
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="g")
    services.credits_reserve(account=account, amount=10, reference="h")
    for amount in (2**63, 2**64 + 5):
        with pytest.raises(InvalidAmountError, match=r"amount must be at most 9223372036854775807") as error:
            services.credits_settle(account=account, reference="h", amount=amount)
        assert error.value.param == "amount"
    assert Hold.objects.get(reference="h").state == "pending"
    hold = services.credits_settle(account=account, reference="h", amount=2**63 - 1)
    assert (hold.captured, hold.waived) == (10, 2**63 - 1 - 10)
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_joined_settle_takes_no_savepoint_and_settles_as_credits_settle(account):
    """``holds._settle_joined`` (a chat turn's end): the settle ``credits_settle`` makes, with no savepoint
    in the caller's transaction on PostgreSQL; a refusal raises as ever and the transaction goes on."""
    from django.test.utils import CaptureQueriesContext

    from rivya_billing.exceptions import HoldNotPendingError

    services.credits_grant(account=account, amount=100, reference="grant")
    services.credits_reserve(account=account, amount=60, reference="job-1")
    services.credits_reserve(account=account, amount=10, reference="job-2")
    services.credits_release(account=account, reference="job-2")
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            hold = holds._settle_joined(account=account, reference="job-1", amount=25)
            with pytest.raises(HoldNotPendingError):
                holds._settle_joined(account=account, reference="job-2", amount=5)
        services.credits_grant(account=account, amount=1, reference="more")  # the transaction goes on
    if pg_settle.enabled():
        assert len(queries) == 2, [query["sql"] for query in queries]  # the two calls: no SAVEPOINT, no RELEASE
    assert (hold.state, hold.captured) == ("settled", 25)
    assert row(hold) == row(Hold.objects.get(pk=hold.pk))
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held) == (76, 0)
    assert_ledger_clean()
