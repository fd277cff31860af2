"""The one-statement reservation (``services/pg_reserve``) against the portable path, on every database.

The same reservations run with ``PG_RESERVE`` on and off and must leave the same
rows, return the same holds and raise the same errors. On PostgreSQL that compares
the PL/pgSQL function with the ORM's row-lock path; on SQLite both settings take the
portable path (the function does not exist there), which the test also checks.
The PostgreSQL-only tests check that the function in the database is
``pg_reserve.sql``'s and that its column lists name every column of the models, so
a new field or a Django upgrade that changes what the ORM writes fails here.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from rivya_billing import migrations, services
from rivya_billing.exceptions import InsufficientCreditsError, ReferenceConflictError, SpendLimitExceededError
from rivya_billing.models import Hold, LedgerEntry, SpendLimit, Wallet
from rivya_billing.services import pg_reserve
from tests.rivya_billing.conftest import T0, assert_ledger_clean

# Ids differ between the two runs; everything else must not.
UNCOMPARED = {"id", "public_id", "wallet", "wallet_id", "hold", "hold_id", "spend_limit", "spend_limit_id"}


def row(instance: Any) -> dict[str, Any]:
    return {
        field.attname: getattr(instance, field.attname)
        for field in type(instance)._meta.concrete_fields
        if field.attname not in UNCOMPARED
    }


def outcome(call: Any) -> Any:
    try:
        hold = call()
    except (InsufficientCreditsError, SpendLimitExceededError, ReferenceConflictError) as error:
        return type(error).__name__, str(error)
    stored = Hold.objects.get(pk=hold.pk)
    assert row(hold) == row(stored)  # the returned hold is what the ORM loads
    assert hold._state.adding is False  # saved: save() updates
    assert hold._state.db == stored._state.db
    return "hold", row(hold), getattr(hold, "spend_limit_state", None)


class Rollback(Exception):
    pass


def rolled_back(call: Any) -> Any:
    try:
        with transaction.atomic():
            result = call()
            raise Rollback
    except Rollback:
        return result


def reservations(make_account: Any, tag: str) -> list[Any]:
    """Every kind of outcome a reservation has, in one run; returns what each returned and the rows after."""
    account, empty = make_account(), make_account()
    services.credits_grant(account=account, amount=100, reference="grant", now=T0)
    limit = services.spend_limit_set(owner_ref=f"pg-reserve:{tag}", credits=50, window="day", now=T0)

    def reserve(amount: int, reference: str, who: Any = account, **kwargs: Any) -> Any:
        kwargs.setdefault("now", T0)
        return outcome(
            lambda: services.credits_reserve(account=who, amount=amount, reference=reference, actor="key_x", **kwargs)
        )

    results = [
        reserve(30, "a"),
        reserve(30, "a"),  # a repeat returns the hold
        reserve(31, "a"),  # a repeat with another amount conflicts
        reserve(20, "b", lease_seconds=60),
        reserve(51, "c"),  # more than available
        reserve(1, "d", who=empty),  # no wallet at all
        reserve(40, "e", spend_limit=limit.pk),
        reserve(40, "e", spend_limit=limit.pk),  # a repeat through the limit
        reserve(11, "f", spend_limit=limit.pk),  # the limit refuses
        reserve(10, "g", spend_limit=limit.pk, now=T0 + timedelta(days=1)),  # a new window
        # No wallet, through a limit: refused, and the limit's count keeps nothing of it.
        reserve(1, "i", who=empty, spend_limit=limit.pk, now=T0 + timedelta(days=1)),
    ]
    results.append(rolled_back(lambda: reserve(5, "h")))  # in a caller's transaction, which rolls back
    results.append(reserve(5, "h"))
    wallet = Wallet.objects.get(account=account)
    entries = LedgerEntry.objects.filter(wallet=wallet).order_by("sequence")
    holds = Hold.objects.filter(wallet=wallet).order_by("pk")
    unique = {"account_id": None, "owner_ref": None, "created_at": None}  # per run, not per path
    results.append((row(wallet) | unique, [row(e) for e in entries], [row(h) for h in holds]))
    results.append(row(SpendLimit.objects.get(pk=limit.pk)) | unique)
    return results


@pytest.mark.django_db(transaction=True)
def test_the_fast_path_reserves_exactly_what_the_portable_path_does(make_account, rivya_settings):
    rivya_settings("RIVYA_BILLING", PG_RESERVE=False)
    assert not pg_reserve.enabled()
    portable = reservations(make_account, "portable")
    rivya_settings("RIVYA_BILLING", PG_RESERVE=True)
    assert pg_reserve.enabled() is (connection.vendor == "postgresql")
    fast = reservations(make_account, "fast")

    assert fast == portable
    kinds = [result[0] for result in fast[:10]]
    refused = ["ReferenceConflictError", "hold", "InsufficientCreditsError", "InsufficientCreditsError"]
    assert kinds == ["hold", "hold", *refused, "hold", "hold", "SpendLimitExceededError", "hold"]
    assert_ledger_clean()


def sql_function_bodies() -> dict[str, str]:
    text = pg_reserve.SQL_FILE.read_text()
    return dict(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(.*?\$\$(.*?)\$\$ LANGUAGE", text, re.DOTALL))


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_function_in_the_database_is_the_sql_files():
    bodies = sql_function_bodies()
    assert set(bodies) == {"rivya_billing_reserve", "rivya_billing_window_start"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'rivya_billing_%%' ORDER BY proname")
        installed = cursor.fetchall()
    functions = [name for name, _ in installed]
    assert functions.count("rivya_billing_reserve") == 1  # one signature: no stale overload left behind
    assert {name: body for name, body in installed if name in bodies} == bodies


@pytest.mark.parametrize(("table", "model"), [("rivya_billing_hold", Hold), ("rivya_billing_ledgerentry", LedgerEntry)])
def test_the_sql_names_every_column_of_the_models(table, model):
    text = pg_reserve.SQL_FILE.read_text()
    lists = re.findall(rf"INSERT INTO {table}(?: AS \w+)? \((.*?)\)", text, re.DOTALL)
    assert lists, table
    columns = {field.column for field in model._meta.concrete_fields if not field.primary_key}
    for names in lists:
        assert {name.strip() for name in names.split(",")} == columns


def test_the_newest_migration_that_loads_the_file_names_its_hash():
    """An edit of the SQL needs a migration that loads it again, or existing databases keep the old one."""
    recorded = [
        getattr(import_module(f"rivya_billing.migrations.{path.stem}"), "RESERVE_SQL_SHA256", None)
        for path in sorted(Path(migrations.__file__).parent.glob("0*.py"))
    ]
    newest = [sha for sha in recorded if sha][-1]
    assert hashlib.sha256(pg_reserve.SQL_FILE.read_bytes()).hexdigest() == newest


@pytest.mark.django_db(transaction=True)
def test_a_joined_reservation_takes_no_savepoint_and_leaves_its_refusal_to_the_caller(
    account, django_assert_num_queries
):
    """``holds._reserve_joined`` (a chat turn's commit): the hold as ``credits_reserve``'s, with no savepoint
    in the caller's transaction on PostgreSQL; a refusal for want of credits ends that transaction, so
    its ``available`` is left to the caller (None) there. Elsewhere it joins the caller's transaction
    too (``test_joined_plain``), its refusal read under the wallet's lock."""
    from django.test.utils import CaptureQueriesContext

    from rivya_billing.services.holds import _reserve_joined

    services.credits_grant(account=account, amount=100, reference="grant")
    postgres = pg_reserve.enabled()
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        hold = _reserve_joined(account=account, amount=60, reference="job-1", actor="key_1")
    if postgres:
        assert len(queries) == 1, [query["sql"] for query in queries]  # the call: no SAVEPOINT, no RELEASE
    assert row(hold) == row(Hold.objects.get(pk=hold.pk))
    with pytest.raises(InsufficientCreditsError) as refused, transaction.atomic():
        _reserve_joined(account=account, amount=41, reference="job-2")
    assert refused.value.available == (None if postgres else 40)
    assert (Wallet.objects.get(account=account).held, Hold.objects.count()) == (60, 1)
