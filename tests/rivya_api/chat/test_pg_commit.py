"""A chat turn's rows written by SQL built once (``chat/pg_commit``) against the plain path, on every database.

The same turns run with ``CHAT_TURN_COMMIT_SQL`` off, on, and on with ``CHAT_TURN_COMMIT_BATCHED``
(the commit in one query, ``pg_commit.commit_batched``) and must leave the same sessions,
messages, holds and ledger entries and raise the same refusals: a new session, a turn on a session
that exists, a turn committed while another is in progress, one whose history another turn's end
made stale, one its key's spend limit refuses, one whose hold is refused, one of an account without
a wallet. On SQLite every setting takes the plain path. On PostgreSQL: the statements per commit,
and turns raced on one session (exactly one accepted, one hold).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DataError, connection, models, transaction

from rivya_api.catalog.selectors import catalog_model_get
from rivya_api.chat import pg_commit, services
from rivya_api.chat.exceptions import ChatCreditsError, ChatSessionBusyError
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.chat.providers.base import ChatUsage
from rivya_billing import services as billing
from rivya_billing.exceptions import SpendLimitExceededError
from rivya_billing.models import Hold, LedgerEntry, SpendLimit, Wallet
from rivya_billing.services import durability
from tests.rivya_api.chat.conftest import PRICED_LOCAL_MODEL
from tests.rivya_billing.concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = PRICED_LOCAL_MODEL["id"]
# Ids and times differ between the two runs; everything else must not.
UNCOMPARED = {"id", "public_id", "session_id", "account_id", "turn_id", "created_at", "updated_at", "completed_at"}


@pytest.fixture(autouse=True)
def _models(settings: Any) -> None:
    settings.RIVYA_API = {**settings.RIVYA_API, "MODELS": [*settings.RIVYA_API["MODELS"], PRICED_LOCAL_MODEL]}


def use_sql(settings: Any, on: bool, batched: bool = False) -> None:
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_TURN_COMMIT_SQL": on, "CHAT_TURN_COMMIT_BATCHED": batched}


# (CHAT_TURN_COMMIT_SQL, CHAT_TURN_COMMIT_BATCHED): the plain path, the SQL's statements one by one, as one batch.
PATHS = {"plain": (False, False), "sql": (True, False), "batched": (True, True)}


def prepare(account: Any, text: str, session: str | None = None, **kwargs: Any) -> services.ChatTurnPlan:
    messages = [services.NewMessage("system", "Be brief."), services.NewMessage("user", text)]
    return services.chat_turn_prepare(
        account=account, model=catalog_model_get(MODEL), messages=messages, session_id=session, **kwargs
    )


def commit(plan: services.ChatTurnPlan) -> Any:
    try:
        services.chat_turn_commit(plan)
    except (ChatSessionBusyError, SpendLimitExceededError) as error:
        return type(error).__name__
    except ChatCreditsError as error:
        return type(error).__name__, error.requested, error.available
    return "accepted"


def finish(plan: services.ChatTurnPlan) -> None:
    services.chat_turn_finish(turn_id=plan.turn_id, content="Ok.", finish_reason="stop", usage=ChatUsage(20, 2))


def row(instance: Any) -> dict[str, Any]:
    return {
        f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields if f.attname not in UNCOMPARED
    }


def written(account: Any) -> list[Any]:
    """Every row the account's turns wrote, in order, with ids left out."""
    sessions = list(ChatSession.objects.filter(account=account).order_by("pk"))
    messages = ChatMessage.objects.filter(session__account=account).order_by("created_at", "pk")
    holds = Hold.objects.filter(wallet__account=account).order_by("pk")
    entries = LedgerEntry.objects.filter(wallet__account=account).order_by("pk")
    wallet = Wallet.objects.get(account=account)
    return [
        [row(session) for session in sessions],
        [(sessions.index(m.session), row(m), m.turn_id == m.public_id) for m in messages],
        [(hold.amount, hold.state, hold.captured, hold.actor) for hold in holds],
        [(entry.type, entry.amount) for entry in entries],
        (wallet.balance, wallet.held),
    ]


def turns(account: Any) -> list[Any]:
    """Every kind of commit, in one run: what each returned, then the rows written."""
    # Quotes, a backslash, accents and an emoji: the batch's rows travel as JSON, the others' as arrays.
    text = 'Hello "wörld" \\ 👋'
    first = prepare(account, text, metadata={"topic": 'grüße \\ "x"'}, idempotency_key="key-1", actor="key_x")
    results = [commit(first)]
    finish(first)
    second, busy = prepare(account, "Again", first.session_id), prepare(account, "Too", first.session_id)
    results += [commit(second), commit(busy)]  # the second's turn is in progress: busy
    finish(second)
    third, stale = prepare(account, "Third", first.session_id), prepare(account, "Stale", first.session_id)
    results.append(commit(third))
    finish(third)
    results.append(commit(stale))  # the third ended since its history was read
    limit = billing.spend_limit_set(owner_ref=f"key:{account.pk}", credits=third.credits_reserved - 1, window="day")
    results.append(commit(prepare(account, "Limited", first.session_id, spend_limit=limit.pk)))
    poor, alone = prepare(account, "Expensive", first.session_id), prepare(account, "Alone")
    wallet = Wallet.objects.get(account=account)
    billing.credits_reserve(account=account, amount=wallet.balance - wallet.held - 1, reference="drain")
    results += [commit(poor), commit(alone)]  # the holds are refused: nothing is left of either turn
    limits = SpendLimit.objects.filter(pk=limit.pk).values_list("used", flat=True)
    return [results, written(account), list(limits)]


def test_the_fast_paths_write_what_the_plain_path_writes(make_account, settings):
    runs = {}
    for name, (sql, batched) in PATHS.items():
        account = make_account()
        billing.credits_grant(account=account, amount=100_000, reference="grant")
        use_sql(settings, sql, batched)
        assert pg_commit.enabled() == (sql and connection.vendor == "postgresql")
        assert pg_commit.batched(spend_limit=None) == (batched and connection.vendor == "postgresql")
        runs[name] = turns(account)
    plain = runs["plain"]
    assert runs["sql"] == plain
    assert runs["batched"] == plain
    outcomes = [result if isinstance(result, str) else result[0] for result in plain[0]]
    assert outcomes == ["accepted", "accepted", "ChatSessionBusyError", "accepted", "ChatSessionBusyError"] + [
        "SpendLimitExceededError",
        "ChatCreditsError",
        "ChatCreditsError",
    ]
    assert plain[2] == [0]  # the refused turn counted nothing against the limit
    assert plain[0][-1][2] == 1  # the one credit the drain left
    assert len(plain[1][1]) == 9  # three turns of two messages and a reply each, not one more


@pytest.mark.postgres  # SQLite does not enforce a varchar's length
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("too_long", ["idempotency_key", "role"])
def test_an_over_long_value_is_refused_not_cut_short(path, too_long, account, settings):
    """A host calling the services directly (the API validates both): the INSERT refuses, on every path."""
    use_sql(settings, *PATHS[path])
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    role, key = ("r" * 11, "") if too_long == "role" else ("user", "k" * 256)
    messages = [services.NewMessage(role, "Hi")]
    plan = services.chat_turn_prepare(
        account=account, model=catalog_model_get(MODEL), messages=messages, idempotency_key=key
    )
    with pytest.raises(DataError, match="too long"):
        services.chat_turn_commit(plan)
    assert not ChatSession.objects.filter(account=account).exists()
    assert not ChatMessage.objects.filter(turn_id=plan.turn_id).exists()
    assert not Hold.objects.filter(wallet__account=account).exists()


def test_statements_that_cannot_be_built_leave_the_plain_path(monkeypatch, account):
    """A field added to ChatMessage that this module does not fill: the plain path, not a failing turn."""
    monkeypatch.setattr(pg_commit, "MESSAGE_COLUMNS", pg_commit.MESSAGE_COLUMNS[:-1])
    pg_commit._built.cache_clear()
    pg_commit.statements.cache_clear()
    try:
        assert not pg_commit.enabled()
        assert pg_commit.STATEMENT_COLUMNS.isdisjoint(pg_commit.MESSAGE_COLUMNS)
    finally:
        monkeypatch.undo()
        pg_commit._built.cache_clear()
        pg_commit.statements.cache_clear()
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    assert commit(prepare(account, "Hi")) == "accepted"


@pytest.fixture
def session_json_field() -> Any:
    """A JSON field added to ChatSession, with its column, as a later migration would add it."""
    field = models.JSONField(default=dict, blank=True)
    ChatSession.add_to_class("extra", field)
    table = connection.ops.quote_name(ChatSession._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} ADD COLUMN extra jsonb NOT NULL DEFAULT '{{}}'")
    pg_commit._built.cache_clear()
    pg_commit.statements.cache_clear()
    yield field
    ChatSession._meta.local_fields.remove(field)
    ChatSession._meta._expire_cache()
    delattr(ChatSession, "extra")
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DROP COLUMN extra")
    pg_commit._built.cache_clear()
    pg_commit.statements.cache_clear()


@pytest.mark.postgres
@pytest.mark.parametrize("named", [False, True], ids=["unknown", "named"])
def test_a_field_added_to_the_session(named, session_json_field, account, monkeypatch):
    """Unknown to this module: the plain path. Named in SESSION_COLUMNS: written as the ORM writes it."""
    if named:
        monkeypatch.setattr(pg_commit, "SESSION_COLUMNS", (*pg_commit.SESSION_COLUMNS, "extra"))
    assert pg_commit.enabled() == named
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = prepare(account, "Hi")
    plan.pending.session.extra = {"tags": ["a", "b"]}
    assert commit(plan) == "accepted"
    session = ChatSession.objects.get(public_id=plan.session_id)
    assert session.extra == {"tags": ["a", "b"]}
    assert session.messages.count() == 3


@pytest.mark.parametrize("path", PATHS)
def test_an_account_without_a_wallet_is_refused_on_every_path(path, account, settings, monkeypatch):
    """Refused by the hold (not by the plan's wallet read, skipped here): nothing is left on any path."""
    use_sql(settings, *PATHS[path])
    monkeypatch.setattr(services.billing_selectors, "credits_available", lambda account: 10**9)
    plan = prepare(account, "Hello")
    assert commit(plan) == ("ChatCreditsError", plan.credits_reserved, 0)
    assert not ChatSession.objects.filter(account=account).exists()
    assert not ChatMessage.objects.filter(turn_id=plan.turn_id).exists()
    assert not Hold.objects.filter(wallet__account=account).exists()


@pytest.mark.postgres
@pytest.mark.parametrize("batched", [False, True], ids=["sql", "batched"])
def test_a_new_session_and_its_messages_are_one_statement(batched, account, settings, django_assert_num_queries):
    use_sql(settings, True, batched)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = prepare(account, "Hello")
    # BEGIN, the turn's one INSERT, the hold's one statement, COMMIT, the WAL flush of early lock
    # release: the plain path's session and messages are two INSERTs, and its hold takes a savepoint.
    # Batched: BEGIN, the INSERT and the hold, COMMIT and the flush, in one query.
    with django_assert_num_queries(1 if batched else 5) as queries:
        services.chat_turn_commit(plan)
    # The turn is accepted only once its WAL is flushed (early lock release), as every hold.
    assert queries.captured_queries[-1]["sql"].endswith(durability.FLUSH)
    session = ChatSession.objects.get(public_id=plan.session_id)
    assert [m.role for m in session.messages.order_by("pk")] == ["system", "user", "assistant"]
    finish(plan)
    plan = prepare(account, "Again", plan.session_id)
    # BEGIN, the session's lock, the INSERT, the hold, COMMIT, the flush; batched: one query.
    with django_assert_num_queries(1 if batched else 6) as queries:
        services.chat_turn_commit(plan)
    assert not batched or queries.captured_queries[0]["sql"].startswith(f"{pg_commit.BEGIN} SELECT")
    assert session.messages.count() == 6
    assert Hold.objects.get(reference=services.chat_turn_reference(plan.turn_id)).state == "pending"


@pytest.mark.postgres
def test_the_batches_are_not_taken_without_billings_one_statement_hold(account, settings):
    use_sql(settings, True, True)
    assert pg_commit.batched(spend_limit=None)
    settings.RIVYA_BILLING = {**settings.RIVYA_BILLING, "PG_RESERVE": False}
    assert not pg_commit.batched(spend_limit=None)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    assert commit(prepare(account, "Hello")) == "accepted"
    with transaction.atomic():  # nor inside a transaction
        settings.RIVYA_BILLING = {**settings.RIVYA_BILLING, "PG_RESERVE": True}
        assert not pg_commit.batched(spend_limit=None)


@pytest.mark.postgres
def test_a_refused_batch_is_rolled_back_and_the_plain_commit_says_why(account, settings, django_assert_num_queries):
    use_sql(settings, True, True)
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = prepare(account, "Hello")
    billing.credits_reserve(account=account, amount=100_000 - 1, reference="drain")
    # The batch (its hold refused: rolled back), then the commit of CHAT_TURN_COMMIT_SQL: BEGIN, the
    # INSERT, the hold (refused), ROLLBACK, and the wallet's read for the 402.
    with django_assert_num_queries(1 + 5):
        assert commit(plan) == ("ChatCreditsError", plan.credits_reserved, 1)
    assert connection.connection.info.transaction_status == 0  # idle: nothing left open
    assert not ChatSession.objects.filter(account=account).exists()
    assert Hold.objects.filter(wallet__account=account).count() == 1  # the drain's


def test_a_refused_commit_in_a_hosts_transaction_leaves_that_transaction_usable(account, settings):
    """The fast path's hold takes no savepoint of its own: the commit's (a savepoint here) takes the refusal."""
    billing.credits_grant(account=account, amount=100_000, reference="grant")
    plan = prepare(account, "Hello")
    billing.credits_reserve(account=account, amount=100_000 - 1, reference="drain")
    with transaction.atomic():
        assert commit(plan) == ("ChatCreditsError", plan.credits_reserved, 1)
        assert ChatSession.objects.filter(account=account).count() == 0
        billing.credits_grant(account=account, amount=5, reference="more")  # the transaction goes on
    assert Wallet.objects.get(account=account).balance == 100_005
    assert not ChatMessage.objects.filter(turn_id=plan.turn_id).exists()


@pytest.mark.postgres
@pytest.mark.parametrize("batched", [False, True], ids=["sql", "batched"])
def test_turns_raced_on_one_session_accept_exactly_one(batched, make_account, settings):
    use_sql(settings, True, batched)
    account = make_account()
    billing.credits_grant(account=account, amount=10_000_000, reference="grant")
    first = prepare(account, "Hello")
    services.chat_turn_commit(first)
    finish(first)
    plans = [prepare(account, f"Turn {index}", first.session_id) for index in range(12)]
    run = run_concurrently(len(plans), lambda index: commit(plans[index]))
    assert run.unexpected() == []
    outcomes = run.winners()
    assert outcomes.count("accepted") == 1, outcomes
    assert set(outcomes) == {"accepted", "ChatSessionBusyError"}
    accepted = plans[outcomes.index("accepted")]
    in_progress = ChatMessage.objects.filter(session__public_id=first.session_id, status="in_progress")
    assert {m.turn_id for m in in_progress} == {accepted.turn_id}
    assert in_progress.count() == 3
    wallet = Wallet.objects.get(account=account)
    assert wallet.held == accepted.credits_reserved
    assert Hold.objects.filter(wallet=wallet, state="pending").count() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("batched", [False, True], ids=["sql", "batched"])
def test_one_plan_committed_twice_at_once_holds_once(batched, make_account, settings):
    use_sql(settings, True, batched)
    account = make_account()
    billing.credits_grant(account=account, amount=10_000_000, reference="grant")
    plan = prepare(account, "Hello")
    run = run_concurrently(2, lambda _: services.chat_turn_commit(plan))
    assert len(run.winners()) == 1, run.errors()  # the other: committed already, or its rows' ids taken
    assert ChatSession.objects.filter(public_id=plan.session_id).count() == 1
    assert ChatMessage.objects.filter(turn_id=plan.turn_id).count() == 3
    wallet = Wallet.objects.get(account=account)
    assert wallet.held == plan.credits_reserved
    assert Hold.objects.filter(wallet=wallet).count() == 1
