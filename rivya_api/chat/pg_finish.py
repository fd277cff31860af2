"""The PostgreSQL fast path of ``chat_turn_finish``'s reads and writes: SQL built once, two statements for four.

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

An account model that inherits from a concrete one (its columns in more than one table) takes the
plain path, as in ``generations.pg_claim``. ``RIVYA_API["CHAT_TURN_FINISH_SQL"] = False`` switches it
off (SQLite always takes the plain path); ``tests/rivya_api/chat/test_pg_finish.py`` compares the two
paths row by row and races finishes of one turn.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.conf import api_settings
from rivya_core.rows import in_one_table, instance_from_row


def enabled() -> bool:
    return (
        connection.vendor == "postgresql" and bool(api_settings.CHAT_TURN_FINISH_SQL) and in_one_table(_account_model())
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
