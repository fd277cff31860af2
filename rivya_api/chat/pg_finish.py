"""The PostgreSQL fast path of ``chat_turn_finish``: SQL built once, two statements for four, or one query.

The plain path locks the turn's assistant message and its session with an ORM query (``select_for_update``
with ``select_related`` of the session and its account, compiled on every turn), and after the
settle sends three UPDATEs (the reply, the turn's other messages, the session's counters), each
compiled too. Here the locking read is the same ``SELECT … FOR UPDATE OF`` message and session,
built once from the models' table and column names, its rows loaded as the ORM would load them
(``rivya_core.rows.instance_from_row``); and the three UPDATEs are one statement: two
data-modifying CTEs (the reply, the other messages) and the session's UPDATE, which counts what the
second changed. The settle between them is billing's one statement, without its savepoint
(``holds._settle_joined``, called by ``turn_end._settle_turn`` when this path is on). The reply's
UPDATE sends no ``pre_save``/``post_save`` signal (the plain path's ``save(update_fields=…)`` sends
both); the turn's other messages and the session are UPDATEs on both paths.

Batched (``finish_batched``, outside a transaction): a finish that settles, whose caller names the
turn's model (``chat_turn_finish(model_id=…)``, as the streaming runner does), is sent as one query
instead of six round trips (BEGIN, the locking read, the settle, the UPDATE, COMMIT, the WAL flush
of early lock release): ``BEGIN; <the locking read>; <settle and UPDATEs>; COMMIT; <flush>``
(simple protocol, psycopg 3 with client-side binding, as ``pg_commit.commit_batched``; its BEGIN
names READ COMMITTED, ``pg_commit.BEGIN``). The second statement takes its snapshot under the first's
locks: it settles (``pg_settle._joined_call``: the account and the capped charge read from the
locked rows, the price computed in Python for the named model and checked against the session's)
and saves the reply, the other messages and the session's counters only when the settle wrote, so
no refusal is an error: a hold that lapsed or was released, or a model that is not the session's,
commits an empty transaction and the plain finish then decides (the reply saved free, say);
a turn that ended already is returned as the locking read found it. A check that the settle, the
reply and the session were written together fails the statement otherwise (a cast of a text that is
no number), so it can never commit a settled hold beside an unsaved reply. For a turn with a funds
hint (``rivya_api.chat.funds_hint``) a statement before the COMMIT reads the wallet's available. A failure inside the
transaction is rolled back and logged (its SQLSTATE only) before the plain finish runs; an error at
or after the COMMIT is raised (the reply may be saved); a lost connection is Django's
``OperationalError``. A release (a stop before any output), a host's transaction, psycopg2 or a
server-binding cursor, ``PG_SETTLE`` off, no ``model_id``: the plain finish. The statement holds the
reply: one that fails (a lock or statement timeout, a deadlock) can reach the server log under
``log_min_error_statement`` whole, where the plain path's failing locking read or settle held ids
only. ``CHAT_TURN_FINISH_BATCHED = False`` switches the batch off;
``tests/rivya_api/chat/test_pg_finish_batch.py`` compares it with both paths row by row.

An account model that inherits from a concrete one (its columns in more than one table) takes the
plain path, as in ``generations.pg_claim``. ``RIVYA_API["CHAT_TURN_FINISH_SQL"] = False`` switches it
off (SQLite has its own, ``sqlite_finish``); ``tests/rivya_api/chat/test_pg_finish.py`` compares the two
paths row by row and races finishes of one turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from rivya_api.chat import pg_commit
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.common import pg_batch
from rivya_api.conf import api_settings
from rivya_billing import fastpath as billing_fastpath
from rivya_billing.services import durability, pg_settle
from rivya_core.rows import in_one_table, instance_from_row, saves_heard

logger = logging.getLogger(__name__)
# A failure inside the batch: logged, then the plain finish runs.
_INSIDE = pg_batch.logged(logger, "The chat turn's finish batch")

IN_PROGRESS = ChatMessage.Status.IN_PROGRESS
SETTLE = "f_"  # the settle's parameters in the batch (pg_settle._joined_params)


def enabled() -> bool:
    """Whether a turn's end takes this path (not while a receiver listens to the reply's saves: the plain
    path's ``message.save()`` sends ``pre_save``/``post_save``, this UPDATE neither)."""
    return (
        connection.vendor == "postgresql"
        and bool(api_settings.CHAT_TURN_FINISH_SQL)
        and in_one_table(_account_model())
        and not saves_heard(ChatMessage)
    )


def batched() -> bool:
    """Whether a finish can be sent as one query (``finish_batched``): this path, ``CHAT_TURN_FINISH_BATCHED``
    and billing's one-statement settle are on, outside a transaction, on psycopg 3 with client-side
    binding (``pg_commit.one_query_possible``: psycopg2 keeps only a query's last result, a
    server-binding cursor refuses several statements)."""
    return (
        bool(api_settings.CHAT_TURN_FINISH_BATCHED)
        and enabled()
        and pg_settle.enabled()
        and pg_commit.one_query_possible()
    )


def _account_model() -> Any:
    return ChatSession._meta.get_field("account").related_model


def locked_turn(turn_id: str) -> ChatMessage:
    """The turn's assistant message, locked with its session, which is loaded with its account (unlocked).

    ``ChatMessage.DoesNotExist`` when there is none, as the ORM's ``get``.
    """
    with connection.cursor() as cursor:
        cursor.execute(_select(), {"turn": turn_id, "assistant": ChatMessage.Role.ASSISTANT})
        row = cursor.fetchone()
    return _loaded(row)


def _loaded(row: Any) -> ChatMessage:
    """The locking read's ``row`` as the ORM would load it: the message, its session and their account."""
    if row is None:
        raise ChatMessage.DoesNotExist("ChatMessage matching query does not exist.")
    models = (ChatMessage, ChatSession, _account_model())
    instances, start = [], 0
    for model in models:
        count = len(model._meta.concrete_fields)
        instances.append(instance_from_row(model, row[start : start + count]))
        start += count
    message, session, account = instances
    session.account = account
    message.session = session
    return message


def finish_batched(
    *,
    turn_id: str,
    reference: str,
    model_id: str,
    price: int,
    reply: dict[str, Any],
    now: datetime,
    available_to: Callable[[int], None] | None = None,
) -> ChatMessage | None:
    """Finish the turn in one query: ``BEGIN; <the locking read>; <settle and UPDATEs>; COMMIT; <flush>``.

    ``price``: the usage's price (> 0) at ``model_id``, the model the caller planned the turn with;
    ``reply``: the reply's fields but ``credits_charged`` (the price capped at the turn's hold, taken
    in SQL from the locked row). The second statement, a snapshot taken under the locks of the first,
    settles (``pg_settle._joined_call``) and, only when the settle did, saves the reply, marks the
    turn's other messages completed and counts them on the session. Returns the reply, or the
    message as locked when the turn had ended already (nothing written), and raises
    ``DoesNotExist`` when there is none, as the plain path. None: nothing was written (the session's
    model is not ``model_id``, no hold on the message, the settle refused: an empty transaction
    committed; a failure inside the transaction: rolled back) and the plain finish decides and says
    it. An error at or after the COMMIT is raised (the reply may be saved), a lost connection as
    Django's ``OperationalError``, as ``pg_commit.commit_batched``.

    ``available_to``: called with the wallet's available credits after a settle, read by a statement
    before the COMMIT (no round trip of its own; ``rivya_api.chat.funds_hint``).
    """
    params = pg_settle._joined_params(reference=reference, actor="", now=now, prefix=SETTLE)
    params.update(turn=turn_id, assistant=ChatMessage.Role.ASSISTANT, in_progress=IN_PROGRESS, model=model_id)
    params.update({f"r_{name}": value for name, value in reply.items()}, price=price, now=now)
    params["completed"] = ChatMessage.Status.COMPLETED
    flush = f"; {durability.FLUSH}" if params[SETTLE + "commit_early"] else ""
    rows = pg_batch.send(_batch(tuple(reply), available_to is not None) + flush, params, inside=_INSIDE)
    if rows is None:
        return None  # failed inside its transaction: nothing written
    locked, settled = rows[1], rows[2]  # past BEGIN's result: the locking read's, the finish's
    message = _loaded(locked)
    if message.status != IN_PROGRESS:
        return message  # ended already: as the plain path, returned as it is
    if settled is None or settled[0] != "settled":
        return None  # not as planned, or the settle refused: nothing written
    pg_settle._joined_hold(params, settled[2:-1], SETTLE)
    for name, value in reply.items():
        setattr(message, name, value)
    message.credits_charged = settled[1]
    if available_to is not None and rows[3] is not None:
        available_to(rows[3][0])
    return message


def finish_rows(*, message: ChatMessage, fields: list[str], charged: int, now: datetime) -> None:
    """Save ``fields`` of the reply, mark the turn's other messages completed, count them all on the session."""
    params = {name: getattr(message, name) for name in fields}
    params["completed"] = ChatMessage.Status.COMPLETED
    params.update(pk=message.pk, turn=message.turn_id, session=message.session_id, charged=charged, now=now)
    with connection.cursor() as cursor:
        cursor.execute(_update(tuple(fields)), params)


@cache
def _select() -> str:
    quote = connection.ops.quote_name
    meta, session_meta = ChatMessage._meta, ChatSession._meta
    account_field = session_meta.get_field("account")
    account_meta = account_field.related_model._meta
    columns = [f"m.{quote(field.column)}" for field in meta.concrete_fields]
    columns += [f"s.{quote(field.column)}" for field in session_meta.concrete_fields]
    columns += [f"a.{quote(field.column)}" for field in account_meta.concrete_fields]
    return (
        f"SELECT {', '.join(columns)} FROM {quote(meta.db_table)} AS m"
        f" JOIN {quote(session_meta.db_table)} AS s"
        f" ON s.{quote(session_meta.pk.column)} = m.{quote(meta.get_field('session').column)}"
        f" JOIN {quote(account_meta.db_table)} AS a"
        f" ON a.{quote(account_field.target_field.column)} = s.{quote(account_field.column)}"
        f" WHERE m.{quote(meta.get_field('public_id').column)} = %(turn)s"
        f" AND m.{quote(meta.get_field('role').column)} = %(assistant)s FOR UPDATE OF m, s"
    )


@cache
def _update(fields: tuple[str, ...]) -> str:
    quote = connection.ops.quote_name
    meta, session_meta = ChatMessage._meta, ChatSession._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)

    def column(name: str, model_meta: Any = meta) -> str:
        return quote(model_meta.get_field(name).column)

    sets = ", ".join(f"{column(name)} = %({name})s" for name in fields)
    count, spent = column("message_count", session_meta), column("credits_spent", session_meta)
    return (
        f"WITH reply AS (UPDATE {table} SET {sets} WHERE {pk} = %(pk)s RETURNING 1),"
        f" others AS (UPDATE {table} SET {column('status')} = %(completed)s"
        f" WHERE {column('turn_id')} = %(turn)s AND {pk} <> %(pk)s RETURNING 1)"
        f" UPDATE {quote(session_meta.db_table)} SET {count} = {count} + (SELECT count(*) FROM others) + 1,"
        f" {spent} = {spent} + %(charged)s, {column('updated_at', session_meta)} = %(now)s"
        f" WHERE {quote(session_meta.pk.column)} = %(session)s"
    )


@cache
def _batch(fields: tuple[str, ...], available: bool = False) -> str:
    """``finish_batched``'s query but for the flush: BEGIN, the locking read, the finish, [the wallet's
    available,] COMMIT."""
    quote = connection.ops.quote_name
    meta, session_meta = ChatMessage._meta, ChatSession._meta
    account_field = session_meta.get_field("account")
    account_meta = account_field.related_model._meta
    table, session_table = quote(meta.db_table), quote(session_meta.db_table)
    pk, session_pk = quote(meta.pk.column), quote(session_meta.pk.column)

    def column(name: str, model_meta: Any = meta) -> str:
        return quote(model_meta.get_field(name).column)

    reserved = column("credits_reserved")
    turn = (
        f"SELECT m.{pk} AS pk, m.{column('turn_id')} AS turn, s.{session_pk} AS session,"
        f" a.{quote(account_meta.pk.column)} AS account, LEAST(%(price)s, COALESCE(m.{reserved}, 0)) AS charged"
        f" FROM {table} AS m JOIN {session_table} AS s ON s.{session_pk} = m.{column('session')}"
        f" JOIN {quote(account_meta.db_table)} AS a"
        f" ON a.{quote(account_field.target_field.column)} = s.{quote(account_field.column)}"
        f" WHERE m.{column('public_id')} = %(turn)s AND m.{column('role')} = %(assistant)s"
        f" AND m.{column('status')} = %(in_progress)s AND s.{column('model', session_meta)} = %(model)s"
        f" AND m.{reserved} > 0"  # no hold (NULL, 0): the plain path releases it
    )
    call = pg_settle._joined_call(SETTLE, account="t.account", amount="t.charged")
    # Only a settle that wrote moves the turn's rows (no refusal is an error: none reaches the server log).
    sets = ", ".join(f"{column(name)} = %(r_{name})s" for name in fields)
    reply = f"UPDATE {table} AS m SET {sets}, {column('credits_charged')} = ok.charged FROM ok WHERE m.{pk} = ok.pk"
    others = (
        f"UPDATE {table} AS m SET {column('status')} = %(completed)s FROM ok"
        f" WHERE m.{column('turn_id')} = ok.turn AND m.{pk} <> ok.pk"
    )
    count, spent = column("message_count", session_meta), column("credits_spent", session_meta)
    session = (
        f"UPDATE {session_table} AS s SET {count} = s.{count} + (SELECT count(*) FROM others) + 1,"
        f" {spent} = s.{spent} + ok.charged, {column('updated_at', session_meta)} = %(now)s"
        f" FROM ok WHERE s.{session_pk} = ok.session"
    )
    # Settled, the reply and the session are one row each (their rows are locked): else fail, never commit.
    check = (
        "(CASE WHEN settled.outcome = 'settled' AND ((SELECT count(*) FROM reply) <> 1"
        " OR (SELECT count(*) FROM session_row) <> 1)"
        " THEN concat('rivya chat turn finish refused: rows not written, turn ', settled.turn) END)::int"
    )
    return (
        f"{pg_commit.BEGIN} {_select()}; WITH t AS ({turn}),"
        f" settled AS (SELECT t.*, x.outcome, x.hold_row FROM t, LATERAL {call} AS x),"
        f" ok AS (SELECT * FROM settled WHERE settled.outcome = 'settled'),"
        f" reply AS ({reply} RETURNING 1), others AS ({others} RETURNING 1), session_row AS ({session} RETURNING 1)"
        f" SELECT settled.outcome, settled.charged, {pg_settle._joined_columns('settled')}, {check} FROM settled;"
        f"{_available() if available else ''} COMMIT"
    )


def _available() -> str:
    """The wallet's available once settled: a statement of its own, whose snapshot sees the settle."""
    quote = connection.ops.quote_name
    meta, session_meta = ChatMessage._meta, ChatSession._meta
    account = (
        f"(SELECT s.{quote(session_meta.get_field('account').column)} FROM {quote(meta.db_table)} AS m"
        f" JOIN {quote(session_meta.db_table)} AS s ON s.{quote(session_meta.pk.column)}"
        f" = m.{quote(meta.get_field('session').column)}"
        f" WHERE m.{quote(meta.get_field('public_id').column)} = %(turn)s"
        f" AND m.{quote(meta.get_field('role').column)} = %(assistant)s)"
    )
    return f" {billing_fastpath.available_statement(account)};"
