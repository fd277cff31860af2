"""A chat turn's end by SQL built once (``chat/pg_finish``) against the plain path, on every database.

The same turns end with ``CHAT_TURN_FINISH_SQL`` on and off and must leave the same sessions,
messages, holds and ledger entries, return the same message (its session and account loaded) and
raise the same errors: a complete reply, a partial one, a stop before any output, a second finish,
a turn whose hold was released first, a failed turn, a turn that does not exist. On SQLite both
settings take the plain path. On PostgreSQL: the statements per finish, and finishes of one turn
raced from many connections (one settles, the others return the saved reply).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from rivya_api.chat import pg_finish, services
from rivya_api.chat.models import ChatMessage
from rivya_api.chat.providers.base import ChatUsage
from rivya_billing import services as billing
from rivya_billing.models import LedgerEntry
from tests.rivya_api.chat.test_pg_commit import _models, prepare, row, written
from tests.rivya_billing.concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["_models"]  # the catalog's priced model, for every test here


def use_sql(settings: Any, on: bool) -> None:
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_TURN_FINISH_SQL": on}


def started(account: Any, text: str, session: str | None = None) -> services.ChatTurnPlan:
    plan = prepare(account, text, session)
    services.chat_turn_commit(plan)
    return plan


def loaded(message: ChatMessage) -> Any:
    """The returned message and the session it came with (as locked, before the turn's counts), and its account."""
    account = message.session.account
    stored = type(account).objects.get(pk=account.pk)
    assert {f.attname: getattr(account, f.attname) for f in account._meta.concrete_fields} == {
        f.attname: getattr(stored, f.attname) for f in account._meta.concrete_fields
    }
    return row(message) | {"session": row(message.session)}


def ended(call: Any) -> Any:
    try:
        return loaded(call())
    except Exception as error:
        return type(error).__name__, str(error)


def endings(account: Any) -> list[Any]:
    """Every kind of end, in one run: what each returned, then the rows written."""
    one = started(account, "Hello")
    results = []

    def finish(plan: services.ChatTurnPlan, usage: ChatUsage, complete: bool = True) -> Any:
        return ended(
            lambda: services.chat_turn_finish(
                turn_id=plan.turn_id, content="Hi there.", finish_reason="stop", usage=usage, complete=complete
            )
        )

    results += [finish(one, ChatUsage(20, 3)), finish(one, ChatUsage(20, 9))]  # the second: unchanged
    partial = started(account, "Partial", one.session_id)
    results.append(finish(partial, ChatUsage(20, 2), complete=False))
    silent = started(account, "Silent", one.session_id)
    results.append(finish(silent, ChatUsage(20, 0), complete=False))
    lapsed = started(account, "Lapsed", one.session_id)
    billing.credits_release(account=account, reference=services.chat_turn_reference(lapsed.turn_id))
    results.append(finish(lapsed, ChatUsage(20, 4)))  # saved, and free
    failed = started(account, "Failed", one.session_id)
    results.append(ended(lambda: services.chat_turn_fail(turn_id=failed.turn_id, error_code="model_error")))
    results.append(ended(lambda: services.chat_turn_fail(turn_id="msg_none")))
    return [results, written(account)]


def test_the_fast_path_ends_turns_as_the_plain_path(make_account, settings):
    plain_account, fast_account = make_account(), make_account()
    for account in (plain_account, fast_account):
        billing.credits_grant(account=account, amount=100_000, reference="grant")
    use_sql(settings, False)
    assert not pg_finish.enabled()
    plain = endings(plain_account)
    use_sql(settings, True)
    assert pg_finish.enabled() == (connection.vendor == "postgresql")
    fast = endings(fast_account)
    assert fast == plain
    statuses = [result["status"] for result in plain[0][:-1]]
    assert statuses == ["completed", "completed", "incomplete", "incomplete", "completed", "failed"]
    assert plain[0][-1][0] == "DoesNotExist"
    session = plain[1][0][0]
    charged = sum(result["credits_charged"] for result in plain[0][:-1] if result["status"] != "failed")
    assert charged > 0
    assert (session["message_count"], session["credits_spent"]) == (12, charged - plain[0][1]["credits_charged"])


@pytest.mark.postgres
def test_a_finish_is_four_statements_fewer(account, django_assert_num_queries):
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    # BEGIN, the locking read, the settle's one statement, the one UPDATE, COMMIT, the WAL flush of
    # early lock release: the plain path's UPDATEs are three, and its settle takes a savepoint.
    with django_assert_num_queries(6):
        services.chat_turn_finish(turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 3))


@pytest.mark.postgres
def test_finishes_of_one_turn_raced_settle_once(make_account):
    account = make_account()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")

    def finish(index: int) -> ChatMessage:
        usage = ChatUsage(20, 3 + index)
        return services.chat_turn_finish(
            turn_id=plan.turn_id, content=f"Reply {index}", finish_reason="stop", usage=usage
        )

    run = run_concurrently(8, finish)
    assert run.unexpected() == []
    replies = {(message.content, message.completion_tokens) for message in run.winners()}
    assert len(replies) == 1  # every call returns the one saved reply
    stored = ChatMessage.objects.get(public_id=plan.turn_id)
    assert {(stored.content, stored.completion_tokens)} == replies
    reference = services.chat_turn_reference(plan.turn_id)
    types = sorted(LedgerEntry.objects.filter(reference=reference).values_list("type", flat=True))
    assert types == ["release", "reserve", "settle"]
    assert stored.session.message_count == 3
