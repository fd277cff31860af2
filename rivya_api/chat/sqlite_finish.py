"""The SQLite fast path of a chat turn's end: its locking read and its three UPDATEs built once, not compiled per turn.

The embedded configuration (SQLite) runs the plain path's transaction unchanged (``turn_end``:
``BEGIN IMMEDIATE``, the read, billing's settle or release, the UPDATEs, ``COMMIT``); only the
statements differ:

* the read is ``pg_finish``'s (the reply, its session and their account in one row, loaded as the
  ORM loads them) but for its ``FOR UPDATE OF``, which SQLite has not (the ORM leaves it out too:
  the transaction already holds SQLite's write lock, ``transaction_mode`` IMMEDIATE);
* the reply's ``save(update_fields=…)``, the turn's other messages' UPDATE and the session's
  counters' UPDATE are the same three statements, built once (SQLite has no data-modifying CTE to
  make them one). The reply's save sends no ``pre_save``/``post_save`` signal (as ``pg_finish``);
  each value goes through its field's ``get_db_prep_save``, as in the ORM's UPDATE.

``chat_turn_fail`` takes the read too. An account model in more than one table: the plain path.
``RIVYA_API["CHAT_TURN_FINISH_SQLITE"] = False`` switches it off; ``tests/rivya_api/chat/test_sqlite_finish.py``
compares it with the plain path row by row.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.db import connection

from rivya_api.chat import pg_finish
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.conf import api_settings
from rivya_core.rows import in_one_table, saves_heard


def enabled() -> bool:
    """Whether a turn's end takes this path (not while a receiver listens to the reply's saves, as ``pg_finish``)."""
    return (
        connection.vendor == "sqlite"
        and bool(api_settings.CHAT_TURN_FINISH_SQLITE)
        and in_one_table(pg_finish._account_model())
        and not saves_heard(ChatMessage)
    )


def locked_turn(turn_id: str) -> ChatMessage:
    """The turn's assistant message with its session and their account; ``ChatMessage.DoesNotExist`` if none."""
    with connection.cursor() as cursor:
        cursor.execute(_select(), {"turn": turn_id, "assistant": ChatMessage.Role.ASSISTANT})
        row = cursor.fetchone()
    return pg_finish._loaded(row)


def finish_rows(*, message: ChatMessage, fields: list[str], charged: int, now: datetime) -> None:
    """Save ``fields`` of the reply, mark the turn's other messages completed, count them all on the session."""
    meta, session_meta = ChatMessage._meta, ChatSession._meta
    values = [meta.get_field(name).get_db_prep_save(getattr(message, name), connection) for name in fields]
    updated_at = session_meta.get_field("updated_at").get_db_prep_save(now, connection)
    reply, others, session = _updates(tuple(fields))
    with connection.cursor() as cursor:
        cursor.execute(reply, [*values, message.pk])
        cursor.execute(others, [ChatMessage.Status.COMPLETED, message.turn_id, message.pk])
        added = cursor.rowcount
        cursor.execute(session, [added + 1, charged, updated_at, message.session_id])


@cache
def _select() -> str:
    select = pg_finish._select()
    assert select.endswith(" FOR UPDATE OF m, s")
    return select.removesuffix(" FOR UPDATE OF m, s")


@cache
def _updates(fields: tuple[str, ...]) -> tuple[str, str, str]:
    quote = connection.ops.quote_name
    meta, session_meta = ChatMessage._meta, ChatSession._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)

    def column(name: str, model_meta=meta) -> str:  # noqa: ANN001
        return quote(model_meta.get_field(name).column)

    count, spent = column("message_count", session_meta), column("credits_spent", session_meta)
    return (
        f"UPDATE {table} SET {', '.join(f'{column(name)} = %s' for name in fields)} WHERE {pk} = %s",
        f"UPDATE {table} SET {column('status')} = %s WHERE {column('turn_id')} = %s AND NOT ({pk} = %s)",
        f"UPDATE {quote(session_meta.db_table)} SET {count} = ({count} + %s), {spent} = ({spent} + %s),"
        f" {column('updated_at', session_meta)} = %s WHERE {quote(session_meta.pk.column)} = %s",
    )
