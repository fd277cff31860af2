"""A chat turn's rows written by SQL built once on SQLite (``chat/sqlite_commit``) against the plain path.

The turns of ``test_pg_commit.turns`` (a new session, a session that exists, busy, stale, a key's
spend limit refusing, holds refused) run with ``CHAT_TURN_COMMIT_SQLITE`` off and on and must leave
the same rows (sessions, messages, holds, ledger entries, wallet, the limit's ``used``) and raise the
same refusals. On SQLite: the rows' statements per commit, the stored text of each value (the ORM's),
and turns raced on one session and one account from threads (one accepted, one hold).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from rivya_api.catalog.selectors import catalog_model_get
from rivya_api.chat import pg_commit, services, sqlite_commit
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_billing import services as billing
from rivya_billing.models import Hold, Wallet
from rivya_billing.services import sqlite_holds
from tests.rivya_api.chat.test_pg_commit import MODEL, _models, commit, finish, prepare, turns  # noqa: F401
from tests.rivya_billing.concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)
sqlite_only = pytest.mark.sqlite  # SQLite's own path: deselected on PostgreSQL (tests/conftest.py)


def use_sqlite(settings: Any, on: bool) -> None:
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_TURN_COMMIT_SQLITE": on}


def raw_rows(account: Any) -> list[tuple[Any, ...]]:
    """The account's messages as SQLite stores them (text of dates and JSON), ids and times left out."""
    table = connection.ops.quote_name(ChatMessage._meta.db_table)
    names = [ChatMessage._meta.get_field(name).column for name in pg_commit.MESSAGE_COLUMNS]
    kept = [name for name in names if name not in ("public_id", "turn_id", "completed_at")]
    ids = list(ChatMessage.objects.filter(session__account=account).order_by("created_at", "pk").values_list("pk"))
    marks, ids = ", ".join(["%s"] * len(ids)), [pk for (pk,) in ids]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(kept)} FROM {table} WHERE id IN ({marks}) ORDER BY id", ids)
        return cursor.fetchall()


def test_the_sqlite_path_writes_what_the_plain_path_writes(make_account, settings):
    runs = {}
    for on in (False, True):
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        use_sqlite(settings, on)
        assert sqlite_commit.enabled() == (on and connection.vendor == "sqlite")
        runs[on] = [turns(account), raw_rows(account)]
    assert runs[True] == runs[False]
    outcomes = [result if isinstance(result, str) else result[0] for result in runs[False][0][0]]
    assert outcomes == ["accepted", "accepted", "ChatSessionBusyError", "accepted", "ChatSessionBusyError"] + [
        "SpendLimitExceededError",
        "ChatCreditsError",
        "ChatCreditsError",
    ]
    assert len(runs[False][1]) == 9


@sqlite_only
@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_the_rows_statements_per_commit(on, account, settings, django_assert_num_queries):
    use_sqlite(settings, on)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = prepare(account, "Hello")
    # BEGIN IMMEDIATE … COMMIT: the rows are two either way; billing's reservation (``sqlite_holds``,
    # on by default) reads the wallet and a repeat in one statement.
    with django_assert_num_queries(8) as queries:
        services.chat_turn_commit(plan)
    built = sqlite_commit.statements()["session"]
    returning = built.split(" VALUES ")[1].split(")")[-1]  # the ORM's: table.id
    session_insert = built.split(" (")[0]  # billing's hold INSERT (``sqlite_holds``) ends with RETURNING "id" too
    sent = [query["sql"] for query in queries.captured_queries]
    assert any(sql.startswith(session_insert) and sql.endswith(returning) for sql in sent) == on
    finish(plan)
    plan = prepare(account, "Again", plan.session_id)
    # A session that exists: the plain path's read, check and INSERT are one INSERT here.
    with django_assert_num_queries(7 if on else 9) as queries:
        services.chat_turn_commit(plan)
    assert any("SELECT * FROM (VALUES" in query["sql"] for query in queries.captured_queries) == on
    assert ChatSession.objects.get(public_id=plan.session_id).messages.count() == 6


@sqlite_only
def test_statements_that_cannot_be_built_leave_the_plain_path(monkeypatch, account):
    monkeypatch.setattr(pg_commit, "MESSAGE_COLUMNS", pg_commit.MESSAGE_COLUMNS[:-1])
    sqlite_commit._built.cache_clear()
    sqlite_commit.statements.cache_clear()
    try:
        assert not sqlite_commit.enabled()
    finally:
        monkeypatch.undo()
        sqlite_commit._built.cache_clear()
        sqlite_commit.statements.cache_clear()
    assert sqlite_commit.enabled()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    assert commit(prepare(account, "Hi")) == "accepted"


@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_turns_raced_on_one_session_accept_exactly_one(on, make_account, settings):
    """Threads on their own connections to one database file: SQLite's write lock serialises them."""
    use_sqlite(settings, on)
    account = make_account()
    billing.credits_grant(account=account, amount=10_000_000, reference="grant")
    first = prepare(account, "Hello")
    services.chat_turn_commit(first)
    finish(first)
    plans = [prepare(account, f"Turn {index}", first.session_id) for index in range(4)]
    run = run_concurrently(len(plans), lambda index: commit(plans[index]))
    assert run.unexpected() == []
    outcomes = run.winners()
    assert sorted(outcomes) == ["ChatSessionBusyError"] * 3 + ["accepted"], outcomes
    accepted = plans[outcomes.index("accepted")]
    in_progress = ChatMessage.objects.filter(session__public_id=first.session_id, status="in_progress")
    assert {m.turn_id for m in in_progress} == {accepted.turn_id}
    wallet = Wallet.objects.get(account=account)
    assert wallet.held == accepted.credits_reserved
    assert Hold.objects.filter(wallet=wallet, state="pending").count() == 1


@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_two_threads_share_an_accounts_last_credits(on, make_account, settings):
    """Two new sessions of one account at once, credits for one: one accepted, one refused, one hold."""
    use_sqlite(settings, on)
    account = make_account()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plans = [prepare(account, "Hello"), prepare(account, "Hi")]
    wallet = Wallet.objects.get(account=account)
    billing.credits_reserve(account=account, amount=wallet.balance - plans[0].credits_reserved, reference="drain")
    run = run_concurrently(2, lambda index: commit(plans[index]))
    assert run.unexpected() == []
    outcomes = sorted(str(outcome[0] if isinstance(outcome, tuple) else outcome) for outcome in run.winners())
    assert outcomes == ["ChatCreditsError", "accepted"]
    assert ChatSession.objects.filter(account=account).count() == 1
    assert Hold.objects.filter(wallet=wallet, state="pending").count() == 2  # the drain's and one turn's
    assert Wallet.objects.get(pk=wallet.pk).available == 0


@sqlite_only
@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_a_turn_of_many_messages_takes_the_plain_path(on, account, settings):
    """Past MAX_ROWS rows (messages and reply) the plain path's batched bulk_create writes them."""
    use_sqlite(settings, on)
    billing.credits_grant(account=account, amount=10**9, reference="grant")
    many = [services.NewMessage("user", f"Line {index}") for index in range(sqlite_commit.MAX_ROWS)]
    plan = services.chat_turn_prepare(account=account, model=catalog_model_get(MODEL), messages=many)
    assert not sqlite_commit.enabled(len(many) + 1)
    assert sqlite_commit.enabled(sqlite_commit.MAX_ROWS) == on
    assert commit(plan) == "accepted"
    texts = ChatMessage.objects.filter(turn_id=plan.turn_id).order_by("pk").values_list("content", flat=True)
    assert list(texts) == [f"Line {index}" for index in range(sqlite_commit.MAX_ROWS)] + [""]


def raw_text(account: Any) -> list[list[tuple[Any, ...]]]:
    """The account's sessions and messages as SQLite stores them; ids as None, times by shape (digits as 0)."""
    found = []
    for model, account_path in ((ChatSession, "account"), (ChatMessage, "session__account")):
        ids = list(model.objects.filter(**{account_path: account}).order_by("pk").values_list("pk", flat=True))
        quote, names = connection.ops.quote_name, [f.column for f in model._meta.concrete_fields]
        texts = ", ".join(f"CAST({quote(name)} AS TEXT)" for name in names)  # no converter between: the stored text
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            table = quote(model._meta.db_table)  # ORDER BY the column, not the text of it (PostgreSQL: "10" < "9")
            cursor.execute(f"SELECT {texts} FROM {table} WHERE id IN ({marks}) ORDER BY {table}.id", ids)
            found.append([tuple(_shape(name, value) for name, value in zip(names, r, strict=True)) for r in cursor])
    return found


def _shape(name: str, value: Any) -> Any:
    if name in ("id", "session_id", "account_id", "public_id", "turn_id"):
        return None
    if name.endswith("_at") and value is not None:
        # The format, not the time; PostgreSQL's text of a timestamptz drops a fraction's trailing zeros.
        return re.sub(r"\d" if connection.vendor == "sqlite" else r"\d+", "0", value)
    return value


def test_images_metadata_and_titles_are_stored_as_the_plain_path_stores_them(make_account, settings, monkeypatch):
    """Image attachments (JSON lists), metadata, the title and every time's text: the plain path's, column by column."""
    monkeypatch.setattr(services, "_image_data_url", lambda **kwargs: "data:image/png;base64,AA==")
    runs = {}
    for on in (False, True):
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        use_sqlite(settings, on)
        images = [{"file_id": "file_a"}, {"file_id": "file_b", "detail": "low"}]
        messages = [services.NewMessage("user", "  Look   at\nthis  ", images), services.NewMessage("user", "And")]
        model = catalog_model_get(MODEL)
        first = services.chat_turn_prepare(account=account, model=model, messages=messages, metadata={"a": [1, "ü"]})
        assert commit(first) == "accepted"
        finish(first)
        again = [services.NewMessage("user", "", [{"file_id": "file_c"}])]
        plan = services.chat_turn_prepare(account=account, model=model, messages=again, session_id=first.session_id)
        assert commit(plan) == "accepted"
        runs[on] = raw_text(account)
    assert runs[True] == runs[False]
    sessions, messages = runs[False]
    assert len(sessions) == 1
    assert len(messages) == 5
    assert "Look at this" in sessions[0]
    assert '["file_a", "file_b"]' in messages[0]
    assert '["file_c"]' in messages[3]
    if connection.vendor == "sqlite":
        assert "0000-00-00 00:00:00.000000" in sessions[0]  # Django's text of a datetime on SQLite


@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_a_turn_in_progress_past_the_timeout_no_longer_makes_its_session_busy(on, make_account, settings):
    """Only a turn started within CHAT_TURN_TIMEOUT_SECONDS is busy; an abandoned one (its process died) is not."""
    use_sqlite(settings, on)
    account = make_account()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    first = prepare(account, "Hello")
    services.chat_turn_commit(first)
    finish(first)
    stuck, late = prepare(account, "Stuck", first.session_id), prepare(account, "Late", first.session_id)
    assert (commit(stuck), commit(late)) == ("accepted", "ChatSessionBusyError")
    timeout = timedelta(seconds=services.api_settings.CHAT_TURN_TIMEOUT_SECONDS)
    ChatMessage.objects.filter(turn_id=stuck.turn_id).update(created_at=timezone.now() - timeout - timedelta(seconds=1))
    assert commit(prepare(account, "Later", first.session_id)) == "accepted"  # stuck never finished


@sqlite_only
def test_an_sqlite_without_returning_takes_the_plain_path(monkeypatch, account, settings, django_assert_num_queries):
    """SQLite before 3.35 has no RETURNING: the plain path runs, and the turn is committed."""
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    sqlite_commit._built.cache_clear()
    sqlite_holds._built.cache_clear()  # billing's built statements need RETURNING too
    try:
        assert not sqlite_commit.enabled()
        assert not sqlite_holds.enabled()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        plan = prepare(account, "Hi")
        with django_assert_num_queries(9) as queries:
            assert commit(plan) == "accepted"
        built = " RETURNING " + connection.ops.quote_name("id")  # the ORM's names the table: "table"."id"
        assert not any(query["sql"].endswith(built) for query in queries.captured_queries)
    finally:
        monkeypatch.undo()
        sqlite_commit._built.cache_clear()
        sqlite_holds._built.cache_clear()
    assert sqlite_commit.enabled()
    assert sqlite_holds.enabled()
