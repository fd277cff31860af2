"""The chat turn's commit as one query (``pg_commit.commit_batched``): after its COMMIT, its errors, when taken.

Once the batch has committed, the turn is accepted: nothing after it turns it into an error. An
error inside its transaction falls back to the plain commit (nothing was written); one at or after
its COMMIT is raised, and a lost connection as Django's error (the API's 503). Not taken: psycopg2,
a cursor that binds on the server, a turn with a key's spend limit (a refused batch's statement,
with the turn's messages, would reach the server log). From the review of branch turn4.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import DatabaseError, DataError, OperationalError, connection

from rivya_api.chat import pg_commit, services
from rivya_api.chat.models import ChatMessage
from rivya_billing import services as billing
from rivya_billing.exceptions import SpendLimitExceededError
from rivya_billing.models import Hold, SpendLimit
from rivya_billing.services import durability
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.chat.test_pg_commit import commit, finish, prepare, use_sql

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _models(settings: Any) -> None:
    from tests.rivya_api.chat.conftest import PRICED_LOCAL_MODEL

    settings.RIVYA_API = {**settings.RIVYA_API, "MODELS": [*settings.RIVYA_API["MODELS"], PRICED_LOCAL_MODEL]}
    use_sql(settings, True, True)


def batches(monkeypatch: Any) -> list[Any]:
    """What each ``commit_batched`` returned (a row: accepted; None: it fell back)."""
    calls: list[Any] = []
    real = pg_commit.commit_batched

    def spy(**kwargs: Any) -> Any:
        calls.append(result := real(**kwargs))
        return result

    monkeypatch.setattr(pg_commit, "commit_batched", spy)
    return calls


def written(plan: services.ChatTurnPlan) -> tuple[int, list[str]]:
    holds = Hold.objects.filter(reference=services.chat_turn_reference(plan.turn_id)).values_list("state", flat=True)
    return ChatMessage.objects.filter(turn_id=plan.turn_id).count(), list(holds)


def test_a_failed_limit_announcement_leaves_the_batched_turn_accepted(account, monkeypatch):
    """The turn that reaches its key's limit announces it after the batch; the announcement fails."""
    from rivya_api.keys import limits
    from rivya_api.keys.models import APIKey
    from rivya_api.keys.services import CreditLimit, api_key_create

    # A limited turn takes the plain path (the server log); made to batch here, as a turn whose
    # hold carries a limit's state would, to reach what follows the batch's COMMIT.
    real_batched = pg_commit.batched
    monkeypatch.setattr(pg_commit, "batched", lambda spend_limit: real_batched(spend_limit=None))
    billing.credits_grant(account=account, amount=10**9, reference="grant")
    amount = prepare(account, "x").credits_reserved
    key, _ = api_key_create(account=account, name="k", credit_limit=CreditLimit(credits=amount, window="total"))
    limit_id = APIKey.objects.get(pk=key.pk).spend_limit_id
    publish = limits.webhook_event_publish

    def fails(**kwargs: Any) -> None:
        raise DatabaseError("webhook insert failed")

    monkeypatch.setattr(limits, "webhook_event_publish", fails)
    calls = batches(monkeypatch)
    plan = prepare(account, "reaches the limit", spend_limit=limit_id)
    assert commit(plan) == "accepted"
    assert len(calls) == 1
    assert calls[0] is not None  # the batch took it
    assert written(plan) == (3, ["pending"])
    # The mark and the event roll back together: the mark is not set...
    assert SpendLimit.objects.get(pk=limit_id).reached_window_start is None
    monkeypatch.setattr(limits, "webhook_event_publish", publish)
    # ...so the next reservation through the key (refused by the limit) announces it.
    with pytest.raises(SpendLimitExceededError) as refused:
        services.chat_turn_commit(prepare(account, "over the limit", spend_limit=limit_id))
    limits.key_limit_refused(refused.value)
    assert SpendLimit.objects.get(pk=limit_id).reached_window_start is not None
    assert WebhookEvent.objects.filter(account=account, type=limits.LIMIT_REACHED).count() == 1


def test_a_turn_with_a_key_spend_limit_takes_the_plain_path(account, django_assert_num_queries):
    billing.credits_grant(account=account, amount=10**9, reference="grant")
    limit = billing.spend_limit_set(owner_ref=f"key:{account.pk}", credits=10**8, window="day")
    assert pg_commit.batched(spend_limit=None)
    assert not pg_commit.batched(spend_limit=limit.pk)
    plan = prepare(account, "limited", spend_limit=limit.pk)
    # BEGIN, the INSERT, the hold, COMMIT, the flush: statements one by one, no batch.
    with django_assert_num_queries(5) as queries:
        assert commit(plan) == "accepted"
    assert not any(query["sql"].startswith(pg_commit.BEGIN) for query in queries.captured_queries)
    assert written(plan) == (3, ["pending"])


def test_psycopg2_and_a_server_binding_cursor_take_the_plain_path(account, monkeypatch, django_assert_num_queries):
    import psycopg
    from django.db.backends.postgresql import psycopg_any

    billing.credits_grant(account=account, amount=10**9, reference="grant")
    assert pg_commit.batched(spend_limit=None)
    monkeypatch.setattr(psycopg_any, "is_psycopg3", False)
    assert not pg_commit.batched(spend_limit=None)
    monkeypatch.undo()
    # A host's OPTIONS["cursor_factory"]: a cursor that binds on the server refuses several statements.
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "cursor_factory", psycopg.Cursor)
    assert not pg_commit.batched(spend_limit=None)
    calls = batches(monkeypatch)
    plan = prepare(account, "Hello")
    with django_assert_num_queries(5):
        assert commit(plan) == "accepted"
    assert calls == []


def fail_the_first_flush(monkeypatch: Any) -> None:
    """The statement after the COMMIT fails once (a stand-in for any error there: a cancel, a timeout)."""
    with connection.cursor() as cursor:
        cursor.execute("DROP SEQUENCE IF EXISTS test_flush_seq; CREATE SEQUENCE test_flush_seq")
    monkeypatch.setattr(
        durability,
        "FLUSH",
        "SELECT CASE WHEN nextval('test_flush_seq') = 1 THEN (1/0)::text"
        " ELSE pg_logical_emit_message(true, 'rivya_billing', '')::text END",
    )


@pytest.mark.parametrize("new", [True, False], ids=["new_session", "existing"])
def test_an_error_after_the_commit_is_raised_not_taken_for_a_refusal(new, account, monkeypatch):
    """No fallback (which said 409 busy, or raised IntegrityError, for the client's own committed turn)."""
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    session = None
    if not new:
        first = prepare(account, "Hello")
        services.chat_turn_commit(first)
        finish(first)
        session = first.session_id
    plan = prepare(account, "Probe", session)
    fail_the_first_flush(monkeypatch)
    with pytest.raises(DataError, match="division by zero"):
        services.chat_turn_commit(plan)
    assert written(plan) == (3, ["pending"])  # committed, as the plain path's failed flush leaves it
    assert connection.connection.info.transaction_status == 0  # idle


def terminate(monkeypatch: Any, *, after_commit: bool) -> None:
    if after_commit:
        monkeypatch.setattr(durability, "FLUSH", "SELECT pg_terminate_backend(pg_backend_pid())")
        return
    real = pg_commit.statements()
    killed = f"{pg_commit.BEGIN} SELECT pg_terminate_backend(pg_backend_pid());"
    fake = {name: sql.replace(pg_commit.BEGIN, killed, 1) for name, sql in real.items()}
    monkeypatch.setattr(pg_commit, "statements", lambda: fake)


@pytest.mark.parametrize("after_commit", [False, True], ids=["before_commit", "after_commit"])
def test_a_lost_connection_is_djangos_error(after_commit, account, monkeypatch):
    """Django's ``OperationalError`` (the API's 503 with Retry-After), not psycopg's (a 500)."""
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = prepare(account, "Probe")
    terminate(monkeypatch, after_commit=after_commit)
    try:
        with pytest.raises(OperationalError):
            services.chat_turn_commit(plan)
    finally:
        monkeypatch.undo()
        connection.close()
    assert written(plan) == ((3, ["pending"]) if after_commit else (0, []))


def test_a_batch_failing_otherwise_than_by_a_refusal_is_logged(account, monkeypatch, caplog):
    """Its SQLSTATE, never its statement (the turn's messages); then the plain commit accepts the turn."""
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    real = pg_commit.statements()
    fake = {name: sql.replace(pg_commit.BEGIN, f"{pg_commit.BEGIN} SELECT 1/0;", 1) for name, sql in real.items()}
    monkeypatch.setattr(pg_commit, "statements", lambda: fake)
    calls = batches(monkeypatch)
    plan = prepare(account, "secret prompt")
    with caplog.at_level(logging.WARNING, logger=pg_commit.logger.name):
        assert commit(plan) == "accepted"
    assert calls == [None]  # the batch failed, the plain commit ran
    warnings = [record.getMessage() for record in caplog.records if record.name == pg_commit.logger.name]
    assert warnings == ["The chat turn's batch failed (SQLSTATE 22012); the plain commit runs"]
    assert written(plan) == (3, ["pending"])


def test_a_refused_batch_is_not_logged_and_says_why_in_the_server_log(account, monkeypatch, caplog):
    """No wallet: the batch's deliberate cast fails, in words an operator reading the server log can place."""
    monkeypatch.setattr(services.billing_selectors, "credits_available", lambda account: 10**9)
    errors: list[str] = []
    real = pg_commit._failed_before_commit

    def spy(error: DatabaseError) -> bool:
        errors.append(str(error))
        return real(error)

    monkeypatch.setattr(pg_commit, "_failed_before_commit", spy)
    plan = prepare(account, "Hello")
    with caplog.at_level(logging.WARNING, logger=pg_commit.logger.name):
        assert commit(plan) == ("ChatCreditsError", plan.credits_reserved, 0)
    assert len(errors) == 1
    assert "rivya chat turn refused: no hold" in errors[0], errors
    assert not [record for record in caplog.records if record.name == pg_commit.logger.name]
    assert written(plan) == (0, [])
