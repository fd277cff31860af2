"""The batched finish's charge, lock and isolation, against the plain path (``pg_finish.finish_batched``).

A usage priced above the turn's hold is charged the hold on every path, whatever ``OVERRUN_POLICY``
(the batch's ``LEAST`` with the hold); a turn without a hold (``credits_reserved`` NULL) is
released, never settled; the batch locks the turn's message and session in its first statement,
and runs at READ COMMITTED whatever the connection's default isolation.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.models import F

from rivya_api.chat import pg_commit, pg_finish, services
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.chat.providers.base import ChatUsage
from rivya_billing import services as billing
from rivya_billing.models import LedgerEntry
from tests.rivya_api.chat.test_pg_commit import MODEL, _models, prepare, written
from tests.rivya_api.chat.test_pg_finish import ended, started
from tests.rivya_api.chat.test_pg_finish_batch import PATHS, spy, use
from tests.rivya_billing.concurrency import committed_meanwhile
from tests.transactions import default_isolation

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["_models"]  # the catalog's priced model, for every test here


def finish(plan: Any, usage: ChatUsage) -> Any:
    return ended(
        lambda: services.chat_turn_finish(
            turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=usage, model_id=MODEL
        )
    )


def ledger(account: Any) -> list[Any]:
    entries = LedgerEntry.objects.filter(wallet__account=account).order_by("pk")
    return [(entry.type, entry.amount, entry.balance_after, entry.held_after) for entry in entries]


@pytest.mark.parametrize("policy", ["cap", "available"])
def test_a_usage_priced_above_the_hold_is_charged_the_hold_on_every_path(policy, make_account, settings, monkeypatch):
    settings.RIVYA_BILLING = {**settings.RIVYA_BILLING, "OVERRUN_POLICY": policy}
    calls = spy(monkeypatch)
    runs = {}
    for name, (sql, batched) in PATHS.items():
        use(settings, sql, batched)
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        plan = started(account, "Hello")
        result = finish(plan, ChatUsage(10**6, 10**6))
        runs[name] = [result, written(account), ledger(account)]
    assert runs["sql"] == runs["plain"]
    assert runs["batched"] == runs["plain"]
    result = runs["plain"][0]
    assert result["status"] == "completed"
    assert 0 < result["credits_charged"] == result["credits_reserved"]
    assert result["session"]["credits_spent"] == 0  # as locked; the session's row below counts it
    sessions, _, holds, _, wallet = runs["plain"][1]
    assert sessions[0]["credits_spent"] == result["credits_charged"]
    assert holds == [(result["credits_reserved"], "settled", result["credits_charged"], holds[0][3])]
    assert wallet == (100_000 - result["credits_charged"], 0)
    if connection.vendor == "postgresql":
        assert calls == ["completed"]  # the batch settled it


def test_a_turn_without_a_hold_is_released_on_every_path(make_account, settings, monkeypatch):
    calls = spy(monkeypatch)
    runs = {}
    for name, (sql, batched) in PATHS.items():
        use(settings, sql, batched)
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        plan = started(account, "Hello")
        ChatMessage.objects.filter(public_id=plan.turn_id).update(credits_reserved=None)
        result = finish(plan, ChatUsage(20, 3))
        runs[name] = [result, written(account), ledger(account)]
    assert runs["sql"] == runs["plain"]
    assert runs["batched"] == runs["plain"]
    assert (runs["plain"][0]["status"], runs["plain"][0]["credits_charged"]) == ("completed", 0)
    assert [entry[0] for entry in runs["plain"][2]] == ["grant", "reserve", "release"]
    if connection.vendor == "postgresql":
        assert calls == [None]  # the batch wrote nothing: the plain finish released it


@pytest.mark.postgres
def test_the_batch_locks_the_turn_in_its_first_statement():
    """The locking read, before the settle's statement: its snapshot is taken under the turn's locks."""
    sql = pg_finish._batch(("content",))
    begin, first, second = (part.strip() for part in sql.split(";")[:3])
    assert begin.startswith("BEGIN")
    assert first == pg_finish._select()
    assert first.endswith("FOR UPDATE OF m, s")
    assert second.startswith("WITH t AS")


def touched(session_pk: Any) -> None:
    ChatSession.objects.filter(public_id=session_pk).update(message_count=F("message_count"))


@pytest.mark.postgres
def test_the_batches_run_at_read_committed_whatever_the_default(account, settings, monkeypatch):
    """A connection whose default is REPEATABLE READ (ALTER DATABASE/ROLE SET): the batches still
    take their fast path through a lock wait, at READ COMMITTED."""
    use(settings, True, True)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    first = started(account, "Hello")
    services.chat_turn_finish(
        turn_id=first.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 3), model_id=MODEL
    )
    commits: list[Any] = []
    real_commit = pg_commit.commit_batched
    monkeypatch.setattr(
        pg_commit, "commit_batched", lambda *a, **k: commits.append(real_commit(*a, **k)) or commits[-1]
    )
    finishes = spy(monkeypatch)
    with default_isolation("repeatable read"):
        plan = prepare(account, "Again", first.session_id)
        done = committed_meanwhile(lambda: touched(first.session_id))
        services.chat_turn_commit(plan)
        assert done.wait(10)
        done = committed_meanwhile(lambda: touched(first.session_id))
        message = services.chat_turn_finish(
            turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 3), model_id=MODEL
        )
        assert done.wait(10)
    assert [row is not None for row in commits] == [True]  # the commit's batch took the turn
    assert (message.status, finishes) == ("completed", ["completed"])  # and the finish's settled it
