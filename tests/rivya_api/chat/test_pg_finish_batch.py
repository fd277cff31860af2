"""A chat turn's finish sent as one query (``pg_finish.finish_batched``) against the plain path.

The same turns end with ``CHAT_TURN_FINISH_SQL`` off (the ORM), on (its statements one by one) and
on with ``CHAT_TURN_FINISH_BATCHED`` (the finish in one query), every call naming the turn's model
as the streaming runner does, and must leave the same sessions, messages, holds and ledger entries
and return the same messages: replies with hostile text, a partial reply, a stop before any output
(a release), a second finish, a hold released or whose lease lapsed first (saved, free), a model
that is not the session's, a failed turn, a turn that does not exist. On SQLite every setting
takes the plain path. On PostgreSQL: one query a finish, what it falls back on, its errors, each
part of it broken, and finishes of one turn raced.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError, OperationalError, connection, transaction
from django.utils import timezone

from rivya_api.chat import pg_commit, pg_finish, services
from rivya_api.chat.models import ChatMessage
from rivya_api.chat.providers.base import ChatUsage
from rivya_billing import services as billing
from rivya_billing.models import Hold, LedgerEntry, Wallet
from rivya_billing.services import durability
from tests.rivya_api.chat.test_pg_commit import MODEL, _models, commit, prepare, written
from tests.rivya_api.chat.test_pg_commit_batch import fail_the_first_flush
from tests.rivya_api.chat.test_pg_finish import ended, started
from tests.rivya_billing.concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["_models"]  # the catalog's priced model, for every test here
DEAR = "rivya-chat-dear"  # another priced model: a caller naming it for a session of MODEL is not believed


@pytest.fixture(autouse=True)
def _dear_model(settings: Any, _models: None) -> None:
    from tests.rivya_api.chat.conftest import PRICED_LOCAL_MODEL

    dear = {**PRICED_LOCAL_MODEL, "id": DEAR, "pricing": {"input_per_1k_tokens": 50, "output_per_1k_tokens": 5000}}
    settings.RIVYA_API = {**settings.RIVYA_API, "MODELS": [*settings.RIVYA_API["MODELS"], dear]}


# (CHAT_TURN_FINISH_SQL, CHAT_TURN_FINISH_BATCHED)
PATHS = {"plain": (False, False), "sql": (True, False), "batched": (True, True)}
HOSTILE = [
    "'); COMMIT; DROP TABLE rivya_api_chatmessage; --",
    "$$ $1 %s %(turn)s {0} \\ \\\\ \\' E'\\x41' ;; BEGIN; ROLLBACK;",
    "Grüße 👋 \u202e\u200b 日本語 \r\n\t \"quoted\" 'single'",
]
# A NUL and a lone surrogate (and a pair held as two code points): PostgreSQL's text takes neither as it is.
UNSTORABLE = ["NUL \x00 inside", "lone \ud800, pair \ud83d\udc4b"]


def use(settings: Any, sql: bool, batched: bool) -> None:
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_TURN_FINISH_SQL": sql, "CHAT_TURN_FINISH_BATCHED": batched}


def spy(monkeypatch: Any) -> list[Any]:
    """Whether each ``finish_batched`` finished the turn (a message) or left it to the plain path (None)."""
    calls: list[Any] = []
    real = pg_finish.finish_batched

    def spied(**kwargs: Any) -> Any:
        result = real(**kwargs)
        calls.append(None if result is None else result.status)
        return result

    monkeypatch.setattr(pg_finish, "finish_batched", spied)
    return calls


def finish(plan: Any, content: str, usage: ChatUsage, complete: bool = True, model: str = MODEL) -> Any:
    return ended(
        lambda: services.chat_turn_finish(
            turn_id=plan.turn_id, content=content, finish_reason="stop", usage=usage, complete=complete, model_id=model
        )
    )


def endings(account: Any) -> list[Any]:
    """Every kind of end, in one run: what each returned, then the rows written."""
    one = started(account, "Hello")
    results = [finish(one, HOSTILE[0], ChatUsage(20, 3)), finish(one, "again", ChatUsage(20, 9))]  # unchanged
    for text in HOSTILE[1:]:
        results.append(finish(started(account, "Hostile", one.session_id), text, ChatUsage(20, 4)))
    ahead, stale = prepare(account, "Ahead", one.session_id), prepare(account, "Stale", one.session_id)
    services.chat_turn_commit(ahead)
    results.append(finish(ahead, "ended since the stale turn's history was read", ChatUsage(20, 3)))
    results.append(commit(stale))  # refused: the session's updated_at moved with the finish
    for text in UNSTORABLE:  # saved with U+FFFD, charged (PostgreSQL's text takes neither as it is)
        unstorable = started(account, "Unstorable", one.session_id)
        results.append(finish(unstorable, text, ChatUsage(20, 3)))
    results.append(finish(unstorable, "again", ChatUsage(20, 3)))  # ended: returned as it is
    results.append(finish(started(account, "Partial", one.session_id), "Par", ChatUsage(20, 2), complete=False))
    results.append(finish(started(account, "Silent", one.session_id), "", ChatUsage(20, 0), complete=False))
    released = started(account, "Released", one.session_id)
    billing.credits_release(account=account, reference=services.chat_turn_reference(released.turn_id))
    results.append(finish(released, "free", ChatUsage(20, 4)))  # saved, and free
    lapsed = started(account, "Lapsed", one.session_id)
    past = timezone.now() - timedelta(seconds=1)
    Hold.objects.filter(reference=services.chat_turn_reference(lapsed.turn_id)).update(lease_expires_at=past)
    results.append(finish(lapsed, "stale", ChatUsage(20, 4)))  # its lease lapsed: saved, and free
    other = started(account, "Other model", one.session_id)
    results.append(finish(other, "named wrong", ChatUsage(20, 5), model=DEAR))  # the session's model prices
    failed = started(account, "Failed", one.session_id)
    results.append(ended(lambda: services.chat_turn_fail(turn_id=failed.turn_id, error_code="model_error")))
    results.append(finish(failed, "after the fail", ChatUsage(20, 3)))  # ended: returned as it is
    missing = type("Plan", (), {"turn_id": "msg_none"})
    results.append(finish(missing, "no such turn", ChatUsage(20, 3)))
    entries = LedgerEntry.objects.filter(wallet__account=account).order_by("pk")
    return [results, written(account), [(e.type, e.amount, e.balance_after, e.held_after) for e in entries]]


def test_the_batched_finish_ends_turns_as_the_plain_path(make_account, settings, monkeypatch):
    calls = spy(monkeypatch)
    runs = {}
    for name, (sql, batched) in PATHS.items():
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        use(settings, sql, batched)
        assert pg_finish.batched() == (batched and connection.vendor == "postgresql")
        runs[name] = endings(account)
    plain = runs["plain"]
    assert runs["sql"] == plain
    assert runs["batched"] == plain
    statuses = [result["status"] if isinstance(result, dict) else result for result in plain[0]]
    assert statuses[:6] == ["completed"] * 5 + ["ChatSessionBusyError"]
    assert statuses[6:14] == ["completed"] * 3 + ["incomplete"] * 2 + ["completed"] * 3
    stored = ["NUL \ufffd inside", "lone \ufffd, pair 👋", "lone \ufffd, pair 👋"]  # the last: as it is
    assert [plain[0][index]["content"] for index in (6, 7, 8)] == stored
    assert all(plain[0][index]["credits_charged"] > 0 for index in (6, 7))
    assert statuses[14:16] == ["failed", "failed"]
    assert plain[0][-1][0] == "DoesNotExist"
    assert [plain[0][index]["content"] for index in (0, 2, 3)] == HOSTILE
    assert [plain[0][index]["credits_charged"] for index in (11, 12)] == [0, 0]  # released, lapsed: free
    if connection.vendor == "postgresql":
        # One query: the three hostile replies, the second finish (returned as it is), the turn
        # ahead of the stale one, the two unstorable replies (stored with U+FFFD) and the finish
        # after them (as it is), the partial reply, the finish after the fail (as it is). Left to
        # the plain path, nothing written: the released and the lapsed hold, the model not the
        # session's. Not tried: the release (a stop before any output).
        assert calls == ["completed"] * 8 + ["incomplete", None, None, None, "failed"], calls


def observed(monkeypatch: Any) -> list[tuple[str, int]]:
    """The ledger metrics each finish observes (its settle's lines), in order."""
    from rivya_billing.services import ledger

    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(
        ledger, "ledger_operation_observe", lambda operation, credits: seen.append((operation, credits))
    )
    return seen


@pytest.mark.postgres
def test_a_finish_is_one_query_and_observes_what_the_plain_path_observes(make_account, settings, monkeypatch):
    seen = observed(monkeypatch)
    lines = {}
    for name in ("sql", "batched"):
        use(settings, *PATHS[name])
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        plan = started(account, "Hello")
        seen.clear()
        # sql: BEGIN, the locking read, the settle, the UPDATEs, COMMIT, the WAL flush. Batched: one query.
        with django_assert_num_queries_on(1 if name == "batched" else 6) as queries:
            message = services.chat_turn_finish(
                turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 3), model_id=MODEL
            )
        assert message.status == "completed"
        assert message.credits_charged > 0
        # The turn is finished only once its WAL is flushed (early lock release), as every settle.
        assert queries[-1].endswith(durability.FLUSH)
        lines[name] = list(seen)
    assert lines["batched"] == lines["sql"] == [("settle", 4), ("release", lines["sql"][1][1])]


class django_assert_num_queries_on:  # noqa: N801 (a context manager, as pytest-django's)
    """The queries sent on the default connection, their number checked."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __enter__(self) -> list[str]:
        from django.test.utils import CaptureQueriesContext

        self.context = CaptureQueriesContext(connection)
        self.context.__enter__()
        self.sql: list[str] = []
        return self.sql

    def __exit__(self, *exc: Any) -> None:
        self.context.__exit__(*exc)
        self.sql += [query["sql"] for query in self.context.captured_queries]
        if exc[0] is None:
            assert len(self.sql) == self.count, self.sql


@pytest.mark.postgres
@pytest.mark.parametrize("why", ["switch", "pg_settle", "no_model", "host_transaction", "psycopg2", "server_cursor"])
def test_when_the_batch_is_not_taken(why, account, settings, monkeypatch):
    import psycopg
    from django.db.backends.postgresql import psycopg_any

    use(settings, True, True)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    calls = spy(monkeypatch)
    assert pg_finish.batched()
    model: str | None = MODEL
    if why == "switch":
        use(settings, True, False)
    elif why == "pg_settle":
        settings.RIVYA_BILLING = {**settings.RIVYA_BILLING, "PG_SETTLE": False}
    elif why == "no_model":
        model = None  # a host's call: the plain path
    elif why == "psycopg2":
        monkeypatch.setattr(psycopg_any, "is_psycopg3", False)
    elif why == "server_cursor":
        monkeypatch.setattr(connection.connection, "cursor_factory", psycopg.Cursor)
    with transaction.atomic() if why == "host_transaction" else _nothing():
        message = services.chat_turn_finish(
            turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 3), model_id=model
        )
    assert message.status == "completed"
    assert calls == []
    assert ChatMessage.objects.get(public_id=plan.turn_id).status == "completed"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def finish_now(plan: Any) -> ChatMessage:
    return services.chat_turn_finish(
        turn_id=plan.turn_id, content="Hi.", finish_reason="stop", usage=ChatUsage(20, 3), model_id=MODEL
    )


def state(plan: Any) -> tuple[str, list[str]]:
    reference = services.chat_turn_reference(plan.turn_id)
    types = sorted(LedgerEntry.objects.filter(reference=reference).values_list("type", flat=True))
    return ChatMessage.objects.get(public_id=plan.turn_id).status, types


def broken(monkeypatch: Any, old: str, new: str) -> None:
    """``finish_batched``'s query with ``old`` replaced by ``new`` (a part of it broken)."""
    real = pg_finish._batch

    def replaced(fields: tuple[str, ...], *rest: Any) -> str:
        sql = real(fields, *rest)
        assert old in sql, old
        return sql.replace(old, new, 1)

    monkeypatch.setattr(pg_finish, "_batch", replaced)


@pytest.mark.postgres
def test_a_batch_failing_inside_its_transaction_is_logged_and_the_plain_finish_runs(
    account, settings, monkeypatch, caplog
):
    """Its SQLSTATE, never its statement (the reply); nothing of it is written, the plain finish settles."""
    use(settings, True, True)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    broken(monkeypatch, pg_commit.BEGIN, f"{pg_commit.BEGIN} SELECT 1/0;")
    calls = spy(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=pg_finish.logger.name):
        assert finish_now(plan).status == "completed"
    assert calls == [None]
    warnings = [record.getMessage() for record in caplog.records if record.name == pg_finish.logger.name]
    assert warnings == ["The chat turn's finish batch failed (SQLSTATE 22012); the plain finish runs"]
    assert state(plan) == ("completed", ["release", "reserve", "settle"])
    assert connection.connection.info.transaction_status == 0  # idle: nothing left open


@pytest.mark.postgres
def test_a_settle_without_its_reply_is_refused_never_committed(account, settings, monkeypatch, caplog):
    """The reply's UPDATE matching nothing (a stand-in for any row not written): the batch's check
    fails it before its COMMIT, so no settled hold is left beside an unsaved reply."""
    use(settings, True, True)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    broken(monkeypatch, f"FROM ok WHERE m.{connection.ops.quote_name('id')} = ok.pk", "FROM ok WHERE false")
    calls = spy(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=pg_finish.logger.name):
        message = finish_now(plan)
    assert calls == [None]
    assert "SQLSTATE 22P02" in caplog.text
    assert (message.status, message.content) == ("completed", "Hi.")
    assert state(plan) == ("completed", ["release", "reserve", "settle"])
    assert Wallet.objects.get(account=account).held == 0


@pytest.mark.postgres
def test_an_error_after_the_commit_is_raised_not_retried(account, settings, monkeypatch):
    """The reply is saved and settled: no plain finish after it (it would return it as it is, but a
    caller must learn that its finish is not known to be durable)."""
    use(settings, True, True)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    fail_the_first_flush(monkeypatch)
    calls = spy(monkeypatch)
    with pytest.raises(DataError, match="division by zero"):
        finish_now(plan)
    assert calls == []  # raised out of finish_batched
    assert state(plan) == ("completed", ["release", "reserve", "settle"])
    assert connection.connection.info.transaction_status == 0  # idle


@pytest.mark.postgres
@pytest.mark.parametrize("after_commit", [False, True], ids=["before_commit", "after_commit"])
def test_a_lost_connection_is_djangos_error(after_commit, account, settings, monkeypatch):
    use(settings, True, True)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")
    if after_commit:
        monkeypatch.setattr(durability, "FLUSH", "SELECT pg_terminate_backend(pg_backend_pid())")
    else:
        broken(monkeypatch, pg_commit.BEGIN, f"{pg_commit.BEGIN} SELECT pg_terminate_backend(pg_backend_pid());")
    try:
        with pytest.raises(OperationalError):
            finish_now(plan)
    finally:
        monkeypatch.undo()
        connection.close()
    assert state(plan) == (
        ("completed", ["release", "reserve", "settle"]) if after_commit else ("in_progress", ["reserve"])
    )


@pytest.mark.postgres
@pytest.mark.parametrize("batched", [False, True], ids=["sql", "batched"])
def test_finishes_of_one_turn_raced_settle_once(batched, make_account, settings):
    use(settings, True, batched)
    account = make_account()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = started(account, "Hello")

    def finish_one(index: int) -> ChatMessage:
        return services.chat_turn_finish(
            turn_id=plan.turn_id,
            content=f"Reply {index}",
            finish_reason="stop",
            usage=ChatUsage(20, 3 + index),
            model_id=MODEL,
        )

    run = run_concurrently(8, finish_one)
    assert run.unexpected() == []
    replies = {(message.content, message.completion_tokens, message.credits_charged) for message in run.winners()}
    assert len(replies) == 1  # every call returns the one saved reply
    stored = ChatMessage.objects.get(public_id=plan.turn_id)
    assert {(stored.content, stored.completion_tokens, stored.credits_charged)} == replies
    assert state(plan) == ("completed", ["release", "reserve", "settle"])
    assert (stored.session.message_count, stored.session.credits_spent) == (3, stored.credits_charged)


@pytest.mark.postgres
def test_finishes_raced_with_the_sweeper_and_fails(make_account, settings):
    """Finishes, fails and the lapsed holds' sweep of many turns at once: each turn ends once, and
    the ledger agrees with what its messages say (charged when settled, free otherwise)."""
    use(settings, True, True)
    account = make_account()
    billing.credits_grant(account=account, amount=10_000_000, reference="grant")
    plans = [started(account, f"Turn {index}") for index in range(6)]
    past = timezone.now() - timedelta(seconds=1)
    for plan in plans[::2]:
        Hold.objects.filter(reference=services.chat_turn_reference(plan.turn_id)).update(lease_expires_at=past)

    def act(index: int) -> Any:
        plan = plans[index % len(plans)]
        kind = index // len(plans)
        if kind == 0:
            return finish_now(plan).status
        if kind == 1:
            return services.chat_turn_fail(turn_id=plan.turn_id).status
        return billing.credits_expire_lapsed_holds()

    run = run_concurrently(3 * len(plans), act)
    assert run.unexpected() == [], run.errors()
    for plan in plans:
        message = ChatMessage.objects.get(public_id=plan.turn_id)
        hold = Hold.objects.get(reference=services.chat_turn_reference(plan.turn_id))
        assert message.status in ("completed", "failed")
        assert (hold.state == "settled") == (message.credits_charged > 0), (message.status, hold.state)
        assert hold.state != "pending"
    charges = ChatMessage.objects.filter(session__account=account, role="assistant").values_list("credits_charged")
    spent = sum(charged for (charged,) in charges)
    wallet = Wallet.objects.get(account=account)
    assert (wallet.balance, wallet.held) == (10_000_000 - spent, 0)
