"""A chat turn's end by SQL built once on SQLite (``chat/sqlite_finish``) against the plain path.

The same turns (finished, stopped with and without output, failed, a hold lapsed before the end,
an end repeated) run with ``CHAT_TURN_FINISH_SQLITE`` off and on and must leave the same rows
(messages, session counters, holds, ledger entries, wallet) and return the same replies. On SQLite:
the statements are the built ones, and two threads ending one turn at once settle it once.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import isolate_apps

from rivya_api.chat import pg_finish, services, sqlite_finish, turn_end
from rivya_api.chat.models import ChatMessage
from rivya_api.chat.providers.base import ChatUsage
from rivya_billing import services as billing
from rivya_billing.models import Hold, LedgerEntry, Wallet
from tests.factories import two_table_models
from tests.rivya_api.chat.test_pg_commit import _models, prepare, row, written  # noqa: F401
from tests.rivya_api.chat.test_sqlite_commit import raw_text
from tests.rivya_billing.concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def use_sqlite(settings: Any, on: bool) -> None:
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_TURN_FINISH_SQLITE": on}


def started(account: Any, text: str, session: str | None = None) -> services.ChatTurnPlan:
    plan = prepare(account, text, session)
    services.chat_turn_commit(plan)
    return plan


def ends(account: Any) -> list[Any]:
    first = started(account, "Hello")
    replies = [services.chat_turn_finish(turn_id=first.turn_id, content="Hi.", finish_reason="stop",
                                         usage=ChatUsage(20, 2))]  # fmt: skip
    replies.append(services.chat_turn_finish(turn_id=first.turn_id, content="Again", finish_reason="stop",
                                             usage=ChatUsage(20, 9)))  # fmt: skip  # ended already: unchanged
    stopped = started(account, "Stop", first.session_id)
    replies.append(services.chat_turn_finish(turn_id=stopped.turn_id, content="Par", finish_reason="stop",
                                             usage=ChatUsage(20, 1), complete=False))  # fmt: skip
    silent = started(account, "Silent", first.session_id)
    replies.append(services.chat_turn_finish(turn_id=silent.turn_id, content="", finish_reason="stop",
                                             usage=ChatUsage(20, 0), complete=False))  # fmt: skip  # released
    failed = started(account, "Fail", first.session_id)
    replies.append(services.chat_turn_fail(turn_id=failed.turn_id, content="oops"))
    lapsed = started(account, "Lapsed", first.session_id)
    hold = Hold.objects.get(reference=services.chat_turn_reference(lapsed.turn_id))
    billing.credits_release(account=account, reference=hold.reference)  # as the sweeper would
    replies.append(services.chat_turn_finish(turn_id=lapsed.turn_id, content="Free.", finish_reason="stop",
                                             usage=ChatUsage(20, 2)))  # fmt: skip
    with pytest.raises(ChatMessage.DoesNotExist):
        services.chat_turn_finish(turn_id="msg_none", content="", finish_reason="stop", usage=ChatUsage(1, 1))
    return [[row(reply) for reply in replies], written(account)]


def test_the_sqlite_path_ends_turns_as_the_plain_path(make_account, settings):
    runs = {}
    for on in (False, True):
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        use_sqlite(settings, on)
        assert sqlite_finish.enabled() == (on and connection.vendor == "sqlite")
        runs[on] = [*ends(account), raw_text(account)]  # the stored text too: times' formats, JSON
    assert runs[True] == runs[False]
    sessions, messages = runs[False][1][0], runs[False][1][1]
    assert sessions[0]["message_count"] == 12  # three messages for each of the four turns that ended
    assert [m[1]["status"] for m in messages].count("failed") == 3
    assert [m[1]["credits_charged"] for m in messages if m[1]["role"] == "assistant"] == [3, 2, 0, 0, 0]


@pytest.mark.sqlite
@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_the_built_statements_are_sent(on, account, settings, django_assert_num_queries):
    use_sqlite(settings, on)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    with django_assert_num_queries(11) as queries:  # the same statements on either path
        services.chat_turn_finish(turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 2))
    sent = [query["sql"] for query in queries.captured_queries]
    assert any(" AS m JOIN " in sql for sql in sent) == on  # the read, as pg_finish's
    # The ORM qualifies its columns with the table's name; the built UPDATEs do not.
    assert any(' WHERE "turn_id" = ' in sql for sql in sent) == on


@pytest.mark.parametrize("on", [False, True], ids=["plain", "sqlite"])
def test_one_turn_ended_twice_at_once_settles_once(on, make_account, settings):
    use_sqlite(settings, on)
    account = make_account()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    run = run_concurrently(2, lambda _: services.chat_turn_finish(
        turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 2)).credits_charged)  # fmt: skip
    assert run.errors() == {}
    charged = run.winners()
    assert charged[0] == charged[1] > 0
    assert LedgerEntry.objects.filter(wallet__account=account, type="settle").count() == 1
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held) == (100_000 - charged[0], 0)


def _every_value(instance: Any) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_the_read_loads_what_the_orm_loads_times_included(account, settings):
    """The turn, its session and their account as the ORM loads them: every field, aware times, JSON decoded."""
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    loaded = {}
    for on in (False, True):
        use_sqlite(settings, on)
        message = turn_end._locked_turn(plan.turn_id)
        loaded[on] = [_every_value(message), _every_value(message.session), _every_value(message.session.account)]
    assert loaded[True] == loaded[False]
    assert loaded[True][0]["created_at"].tzinfo is not None


@isolate_apps("rivya_api")
def test_an_account_model_in_two_tables_takes_the_plain_path(monkeypatch, account, settings):
    """The raw read takes one table's columns per model: a multi-table account model is the ORM's to load."""

    _, Org = two_table_models()

    use_sqlite(settings, True)
    assert sqlite_finish.enabled() == (connection.vendor == "sqlite")
    monkeypatch.setattr(pg_finish, "_account_model", lambda: Org)
    assert not sqlite_finish.enabled()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    reply = services.chat_turn_finish(turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 2))
    assert (reply.status, reply.content, reply.credits_charged) == ("completed", "Hi.", 3)
