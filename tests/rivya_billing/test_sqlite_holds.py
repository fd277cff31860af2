"""Billing's reservation and settle by SQL built once on SQLite (``services/sqlite_holds``) against the plain path.

The same reservations and settles (``test_pg_reserve.reservations``, ``test_pg_settle.settles``:
repeats, conflicts, refusals, overruns under both policies, stale and released holds, expiring
grants, a spend limit, a caller's transaction that rolls back) run with ``SQLITE_HOLDS`` off and on
and must leave the same rows (every column of wallet, ledger entries, holds, grants, spend limit,
low-balance notices), return the same holds, raise the same errors and observe the same metrics
once committed. On another database the switch changes nothing (the path is SQLite's), which the
test checks too. On SQLite: the joined calls (no savepoint; a refusal writes nothing and the
caller goes on), the statements sent, races on one database file (threads reserving one wallet's
last credits, one reference reserved at once, one settle sent twice) and the fallbacks (a spend
limit, the switch, an SQLite too old to build the statements).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from rivya_billing import services
from rivya_billing.exceptions import (
    HoldNotPendingError,
    InsufficientCreditsError,
    LedgerConcurrencyError,
    ReferenceConflictError,
)
from rivya_billing.models import Hold, LedgerEntry, SpendLimit, Wallet
from rivya_billing.services import holds, ledger, sqlite_holds
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import T0, assert_ledger_clean
from tests.rivya_billing.test_pg_reserve import reservations, row
from tests.rivya_billing.test_pg_settle import settles

pytestmark = pytest.mark.django_db(transaction=True)


def use(rivya_settings: Any, on: bool) -> None:
    """The portable path (the PostgreSQL statements off), with SQLite's built statements ``on`` or off."""
    rivya_settings("RIVYA_BILLING", PG_RESERVE=False, PG_SETTLE=False, SQLITE_HOLDS=on)
    assert sqlite_holds.enabled() is (on and connection.vendor == "sqlite")


def counted(monkeypatch: Any) -> dict[str, list[Any]]:
    """What each of the fast path's two calls returned (a settle's None: the plain path took it)."""
    calls: dict[str, list[Any]] = {"reserve_rows": [], "settle_rows": []}
    for name, results in calls.items():
        original = getattr(sqlite_holds, name)

        def spy(*, _original: Any = original, _results: list[Any] = results, **kwargs: Any) -> Any:
            result = _original(**kwargs)
            _results.append(result)
            return result

        monkeypatch.setattr(sqlite_holds, name, spy)
    return calls


def _recorder(events: list[Any]) -> Any:
    return lambda *, operation, credits: events.append((operation, credits))


def test_the_sqlite_path_reserves_exactly_what_the_plain_path_does(make_account, rivya_settings, monkeypatch):
    use(rivya_settings, False)
    plain = reservations(make_account, "plain")
    use(rivya_settings, True)
    calls = counted(monkeypatch)
    fast = reservations(make_account, "sqlite")

    assert fast == plain
    kinds = [result[0] for result in fast[:10]]
    refused = ["ReferenceConflictError", "hold", "InsufficientCreditsError", "InsufficientCreditsError"]
    assert kinds == ["hold", "hold", *refused, "hold", "hold", "SpendLimitExceededError", "hold"]
    # Returned without a limit: a, a, a (repeats), b (c, d and both h are refused); the limited ones fall back.
    assert len(calls["reserve_rows"]) == (4 if connection.vendor == "sqlite" else 0)
    assert_ledger_clean()


@pytest.mark.parametrize("policy", ["cap", "available"])
def test_the_sqlite_path_settles_exactly_what_the_plain_path_does(make_account, rivya_settings, monkeypatch, policy):
    rivya_settings("RIVYA_BILLING", OVERRUN_POLICY=policy)
    results = {}
    for on in (False, True):
        use(rivya_settings, on)
        with monkeypatch.context() as patch:
            calls = counted(patch)
            events: list[Any] = []
            patch.setattr(ledger, "ledger_operation_observe", _recorder(events))
            results[on] = settles(make_account, f"{on}-{policy}", events)
    for number, (got, expected) in enumerate(zip(results[True], results[False], strict=True)):
        assert got == expected, number
    fast = results[True]
    assert fast[0] == (("hold", fast[0][0][1]), [("settle", 10)])
    assert fast[1][1] == []  # the repeat did nothing
    assert fast[2][0][0] == "ReferenceConflictError"
    assert fast[13][1] == []  # rolled back: no metrics
    if connection.vendor == "sqlite":
        # Every reservation but the two limited ones; every settle's read, the limited holds' returning None.
        assert len(calls["reserve_rows"]) == 10
        settled = calls["settle_rows"]
        assert [result is None for result in settled].count(True) == 2
        assert len(settled) == 10  # full twice, partial and above (None), unused, claimed, rolled twice, caller, last
    else:
        assert calls == {"reserve_rows": [], "settle_rows": []}
    assert_ledger_clean()


@pytest.mark.sqlite
def test_joined_calls_take_no_savepoint_and_a_refusal_writes_nothing(make_account, rivya_settings):
    """A chat turn's commit and end: refused reservations and settles leave the caller's transaction as it was."""
    use(rivya_settings, True)
    account = make_account()
    services.credits_grant(account=account, amount=50, reference="grant", now=T0)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        with pytest.raises(InsufficientCreditsError) as refused:
            holds._reserve_joined(account=account, amount=51, reference="big")
        assert (refused.value.requested, refused.value.available) == (51, 50)
        hold = holds._reserve_joined(account=account, amount=30, reference="turn", actor="key_1")
        assert holds._reserve_joined(account=account, amount=30, reference="turn") == hold  # a repeat
        with pytest.raises(ReferenceConflictError):
            holds._reserve_joined(account=account, amount=31, reference="turn")
        settled = holds._settle_joined(account=account, reference="turn", amount=12)
        with pytest.raises(ReferenceConflictError):
            holds._settle_joined(account=account, reference="turn", amount=13)
        services.credits_grant(account=account, amount=1, reference="after", now=T0)  # the caller goes on
    sent = [query["sql"].split()[0].upper() for query in queries.captured_queries]
    assert sent.count("SAVEPOINT") == 1  # the grant's own; none of the joined calls'
    assert (settled.state, settled.captured, settled.usage) == ("settled", 12, 12)
    entries = LedgerEntry.objects.filter(wallet__account=account).order_by("sequence")
    assert [(e.sequence, e.type, e.amount, e.balance_after, e.held_after, e.actor) for e in entries] == [
        (1, "grant", 50, 50, 0, ""),
        (2, "reserve", 30, 50, 30, "key_1"),
        (3, "settle", 12, 38, 18, "key_1"),
        (4, "release", 18, 38, 0, "key_1"),
        (5, "grant", 1, 39, 0, ""),
    ]
    assert Hold.objects.filter(wallet__account=account).count() == 1
    assert_ledger_clean()


@pytest.mark.sqlite
@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_the_built_statements_are_sent(on, account, rivya_settings):
    use(rivya_settings, on)
    services.credits_grant(account=account, amount=50, reference="grant", now=T0)
    with CaptureQueriesContext(connection) as reserved:
        services.credits_reserve(account=account, amount=20, reference="r", now=T0)
    with CaptureQueriesContext(connection) as settled:
        services.credits_settle(account=account, reference="r", amount=5, now=T0)
    # BEGIN IMMEDIATE, the wallet, the repeat check (built: one read with the wallet), the hold, the
    # wallet UPDATE, the entry, COMMIT; the settle: BEGIN, the hold with its wallet, the wallet UPDATE,
    # the entries, the grants' probe, the hold's UPDATE, COMMIT (the same statements, built once).
    assert len(reserved) == (6 if on else 7)
    assert len(settled) == 7
    joined = [q["sql"] for q in reserved.captured_queries]
    assert any(" LEFT JOIN " in sql for sql in joined) == on


@pytest.mark.sqlite
def test_threads_reserving_one_wallets_last_credits_get_exactly_them(make_account, rivya_settings):
    use(rivya_settings, True)
    account = make_account()
    services.credits_grant(account=account, amount=50, reference="grant")
    run = run_concurrently(8, lambda i: services.credits_reserve(account=account, amount=10, reference=f"r{i}").pk)
    assert run.unexpected(InsufficientCreditsError) == []
    assert (len(run.winners()), run.errors()) == (5, {"InsufficientCreditsError": 3})
    late = run_concurrently(4, lambda _: services.credits_reserve(account=account, amount=1, reference="late"))
    assert late.errors() == {"InsufficientCreditsError": 4}  # refused, and nothing written
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held) == (50, 50)  # nothing left for "same"
    assert Hold.objects.filter(wallet=wallet).count() == 5
    assert_ledger_clean()


@pytest.mark.sqlite
def test_one_reference_reserved_at_once_and_one_settle_sent_twice_post_once(make_account, rivya_settings):
    use(rivya_settings, True)
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="grant")
    run = run_concurrently(4, lambda _: services.credits_reserve(account=account, amount=30, reference="one").pk)
    assert run.errors() == {}
    assert len(set(run.winners())) == 1
    settled = run_concurrently(2, lambda _: services.credits_settle(account=account, reference="one", amount=7).usage)
    assert settled.errors() == {}
    assert settled.winners() == [7, 7]
    types = list(
        LedgerEntry.objects.filter(wallet__account=account).order_by("sequence").values_list("type", flat=True)
    )
    assert types == ["grant", "reserve", "settle", "release"]
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held, wallet.last_sequence) == (93, 0, 4)
    with pytest.raises(HoldNotPendingError):
        services.credits_release(account=account, reference="one")
    assert_ledger_clean()


@pytest.mark.sqlite
def test_a_spend_limit_and_the_switch_take_the_plain_path(make_account, rivya_settings, monkeypatch):
    account = make_account()
    services.credits_grant(account=account, amount=100, reference="grant", now=T0)
    limit = services.spend_limit_set(owner_ref="sqlite-holds", credits=40, window="total", now=T0)
    use(rivya_settings, True)
    calls = counted(monkeypatch)
    hold = services.credits_reserve(account=account, amount=30, reference="limited", spend_limit=limit.pk, now=T0)
    assert calls["reserve_rows"] == []  # the plain path counted it
    assert hold.spend_limit_state == (30, 40, limit.window_start)
    services.credits_settle(account=account, reference="limited", amount=10, now=T0)
    assert calls["settle_rows"] == [None]  # read, then left to the plain path
    assert SpendLimit.objects.get(pk=limit.pk).used == 10  # the rest given back
    use(rivya_settings, False)
    services.credits_reserve(account=account, amount=5, reference="off", now=T0)
    services.credits_settle(account=account, reference="off", amount=5, now=T0)
    assert len(calls["reserve_rows"]) == 0
    assert len(calls["settle_rows"]) == 1
    assert_ledger_clean()


@pytest.mark.sqlite
def test_an_sqlite_without_returning_takes_the_plain_path(monkeypatch, rivya_settings, caplog):
    import sqlite3

    rivya_settings("RIVYA_BILLING", SQLITE_HOLDS=True)
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    sqlite_holds._built.cache_clear()
    try:
        with caplog.at_level(logging.ERROR, logger="rivya_billing.services.sqlite_holds"):
            assert sqlite_holds.enabled() is False
        assert "cannot be built" in caplog.text
    finally:
        sqlite_holds._built.cache_clear()


@pytest.mark.sqlite
def test_the_returned_hold_is_what_the_orm_loads(account, rivya_settings):
    use(rivya_settings, True)
    services.credits_grant(account=account, amount=10, reference="grant", now=T0)
    hold = services.credits_reserve(account=account, amount=4, reference="r", actor="key_9", now=T0)
    stored = Hold.objects.get(pk=hold.pk)
    assert row(hold) == row(stored)
    assert hold.public_id == stored.public_id
    assert hold.created_at == T0
    assert (hold._state.adding, hold._state.db) == (False, stored._state.db)
    repeat = services.credits_reserve(account=account, amount=4, reference="r", now=T0)
    assert repeat.public_id == hold.public_id
    assert type(repeat.created_at) is type(stored.created_at)


@pytest.mark.sqlite
def test_a_receiver_of_the_holds_save_takes_the_plain_path(account, rivya_settings, monkeypatch):
    """The built INSERT sends no ``pre_save``/``post_save``: while one is connected for ``Hold`` the
    reservation is the plain path's (``Hold.objects.create``), which sends them; the settle sends none either way."""
    use(rivya_settings, True)
    calls = counted(monkeypatch)
    services.credits_grant(account=account, amount=10, reference="grant", now=T0)
    saved: list[tuple[str, bool]] = []

    def receiver(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        saved.append((instance.reference, created))

    post_save.connect(receiver, sender=Hold, dispatch_uid="test_sqlite_holds")
    try:
        assert sqlite_holds.reserves() is False
        services.credits_reserve(account=account, amount=4, reference="watched", now=T0)
    finally:
        post_save.disconnect(sender=Hold, dispatch_uid="test_sqlite_holds")
    assert (saved, calls["reserve_rows"]) == ([("watched", True)], [])
    assert sqlite_holds.reserves() is True
    services.credits_reserve(account=account, amount=4, reference="unwatched", now=T0)
    assert len(calls["reserve_rows"]) == 1
    assert_ledger_clean()


class _Moved:
    """``ledger._entries`` after another writer moved the wallet's sequence on (past its lock: what the
    wallet UPDATE's ``last_sequence`` guard is there for)."""

    def __init__(self) -> None:
        self.entries = ledger._entries

    def __call__(self, *, wallet: Wallet, **kwargs: Any) -> Any:
        Wallet.objects.filter(pk=wallet.pk).update(last_sequence=F("last_sequence") + 1)
        return self.entries(wallet=wallet, **kwargs)


@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_a_wallet_moved_on_under_the_lock_is_refused_and_nothing_is_posted(on, account, rivya_settings, monkeypatch):
    use(rivya_settings, on)
    services.credits_grant(account=account, amount=50, reference="grant", now=T0)
    services.credits_reserve(account=account, amount=20, reference="settled", now=T0)
    before = [row(w) for w in Wallet.objects.all()], [row(e) for e in LedgerEntry.objects.order_by("pk")]
    holds_before = [row(h) for h in Hold.objects.order_by("pk")]
    moved = _Moved()
    monkeypatch.setattr(ledger, "_entries", moved)
    monkeypatch.setattr(sqlite_holds, "_entries", moved)
    with pytest.raises(LedgerConcurrencyError):
        services.credits_reserve(account=account, amount=5, reference="new", now=T0)
    with pytest.raises(LedgerConcurrencyError):
        services.credits_settle(account=account, reference="settled", amount=5, now=T0)
    assert ([row(w) for w in Wallet.objects.all()], [row(e) for e in LedgerEntry.objects.order_by("pk")]) == before
    assert [row(h) for h in Hold.objects.order_by("pk")] == holds_before  # no "new", "settled" still pending


@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_a_hold_resolved_under_the_lock_is_refused_and_nothing_is_posted(on, account, rivya_settings, monkeypatch):
    """The hold's UPDATE re-checks ``pending``: a hold another writer resolved meanwhile is not settled again."""
    use(rivya_settings, on)
    services.credits_grant(account=account, amount=50, reference="grant", now=T0)
    hold = services.credits_reserve(account=account, amount=20, reference="r", now=T0)
    lines = ledger._settle_lines

    def released_meanwhile(hold: Hold, **kwargs: Any) -> Any:
        Hold.objects.filter(pk=hold.pk).update(state="released", resolved_at=T0)
        return lines(hold, **kwargs)

    monkeypatch.setattr(holds, "_settle_lines", released_meanwhile)
    monkeypatch.setattr(sqlite_holds, "_settle_lines", released_meanwhile)
    with pytest.raises(LedgerConcurrencyError):
        services.credits_settle(account=account, reference="r", amount=5, now=T0)
    stored = Hold.objects.get(pk=hold.pk)
    assert (stored.state, stored.usage) == ("pending", None)
    assert list(LedgerEntry.objects.order_by("sequence").values_list("type", flat=True)) == ["grant", "reserve"]


@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_an_object_of_another_model_is_not_taken_for_the_account(on, make_account, rivya_settings):
    """The ORM's lookup refuses an instance of another model; its pk must not name some account's wallet."""
    use(rivya_settings, on)
    account = make_account()
    services.credits_grant(account=account, amount=50, reference="grant", now=T0)
    services.credits_reserve(account=account, amount=10, reference="r", now=T0)
    other = SpendLimit.objects.create(owner_ref="not-an-account", credits=1)
    SpendLimit.objects.filter(pk=other.pk).update(id=account.pk)  # the same pk as the account's
    other = SpendLimit.objects.get(pk=account.pk)
    message = f'Cannot query "{other}": Must be "{type(account)._meta.object_name}" instance.'
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        holds._reserve_rows(account=other, amount=5, reference="s", actor="", now=T0, expires=T0)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        holds._settle_rows(account=other, reference="r", amount=5, actor="", lease_token=None, now=T0)
    assert list(LedgerEntry.objects.order_by("sequence").values_list("type", flat=True)) == ["grant", "reserve"]


@pytest.mark.sqlite
def test_the_stored_text_and_the_returned_wallet_are_the_plain_paths(make_account, rivya_settings):
    """The columns as SQLite stores them (a datetime's text is the ORM's, not the driver's own adaptation),
    and the wallet the returned hold carries (moved on in memory, as ``ledger._post`` does)."""
    now = T0.replace(microsecond=123456)
    stored = {}
    for on in (False, True):
        use(rivya_settings, on)
        account = make_account()
        services.credits_grant(account=account, amount=50, reference="grant", now=now)
        reserved = services.credits_reserve(account=account, amount=20, reference="r", actor="key_1", now=now)
        assert row(reserved.wallet) == row(Wallet.objects.get(pk=reserved.wallet_id))
        settled = services.credits_settle(account=account, reference="r", amount=5, now=now)
        assert row(settled.wallet) == row(Wallet.objects.get(pk=settled.wallet_id))
        text = "CAST({} AS TEXT)".format
        statements = [
            (Wallet, f"balance, held, last_sequence, {text('updated_at')}", "id", reserved.wallet_id),
            (
                Hold,
                f"reference, amount, state, usage, captured, overrun, waived, actor, lease_token, "
                f"{text('created_at')}, {text('lease_expires_at')}, {text('resolved_at')}",
                "id",
                reserved.pk,
            ),
            (
                LedgerEntry,
                f"sequence, type, amount, balance_after, held_after, actor, description, {text('created_at')}",
                "wallet_id",
                reserved.wallet_id,
            ),
        ]
        with connection.cursor() as cursor:
            texts = []
            for model, columns, key, value in statements:
                table = model._meta.db_table
                cursor.execute(f"SELECT {columns} FROM {table} WHERE {key} = %s ORDER BY id", [value])
                texts.append(cursor.fetchall())
        stored[on] = texts
    assert stored[False] == stored[True]
    assert stored[True][0][0][3] == "2030-01-01 12:00:00.123456"  # the ORM's text, not the driver's own
