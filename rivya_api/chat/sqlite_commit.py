"""The SQLite fast path of a chat turn's rows in ``chat_turn_commit``: statements built once, none compiled per turn.

The embedded configuration (SQLite, ``make run``) runs the plain path's transaction unchanged
(``services._commit``: ``BEGIN IMMEDIATE``, the rows, billing's hold, ``COMMIT``); only the rows'
statements differ. The plain path saves a new session (an ORM INSERT) and bulk-creates its
messages, or, for a session that exists, reads it again (its ``select_for_update`` is a plain read
on SQLite), checks that no turn is in progress (an ``EXISTS``) and bulk-creates the messages: two
or three statements, each compiled by the ORM on every turn. Here:

* a new session: ``INSERT … RETURNING id`` and the messages' ``INSERT … VALUES``, both built once
  (the messages' once per number of rows, up to ``MAX_ROWS``: a turn with more takes the plain path);
* a session that exists: one ``INSERT … SELECT … FROM (VALUES …) WHERE EXISTS (the session, its
  ``updated_at`` still the history's) AND NOT EXISTS (a turn in progress) RETURNING id``: no row
  inserted means busy or stale, which the plain path also says as busy. The transaction already
  holds SQLite's write lock (``transaction_mode`` IMMEDIATE), so no other turn commits between the
  read and the insert, as under the plain path.

Columns and values are ``pg_commit``'s (``MESSAGE_COLUMNS``, ``SESSION_COLUMNS``, ``_session_values``):
a field added to either model without a value here makes ``statements`` fail and the plain path
runs. Every value goes through its field's ``get_db_prep_save``, as in the ORM's INSERT, so the
stored text (dates, JSON) is the plain path's; as in ``pg_commit``, ``created_at`` is taken once
per turn (the plain path takes it per row; history order is the same) and no ``pre_save``/
``post_save`` signal is sent for the session.

``RIVYA_API["CHAT_TURN_COMMIT_SQLITE"] = False`` switches it off;
``tests/rivya_api/chat/test_sqlite_commit.py`` compares it with the plain path row by row.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection

from rivya_api.chat import pg_commit
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.conf import api_settings
from rivya_core.rows import saves_heard

logger = logging.getLogger(__name__)


# Rows a turn may have here (its messages and the reply); more take the plain path, whose
# bulk_create batches under SQLite's variable limit. Bounds the statements cached per row count too.
MAX_ROWS = 16


def enabled(rows: int = 1) -> bool:
    """Whether a turn of ``rows`` message rows takes this path (not while a receiver listens to the
    session's saves, as ``pg_commit``)."""
    return (
        connection.vendor == "sqlite"
        and bool(api_settings.CHAT_TURN_COMMIT_SQLITE)
        and rows <= MAX_ROWS
        and _built()
        and not saves_heard(ChatSession)
    )


@cache
def _built() -> bool:
    """Whether the statements can be built for these models and this SQLite (else the plain path, said once)."""
    try:
        import sqlite3

        if sqlite3.sqlite_version_info < (3, 35):  # RETURNING
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} has no RETURNING")
        statements()
    except Exception:
        logger.exception("The chat turn's SQLite commit statements cannot be built; the plain path is used")
        return False
    return True


def insert_new_session(*, session: ChatSession, rows: list[dict[str, Any]], now: datetime) -> None:
    """Insert the unsaved ``session`` and the turn's message ``rows``; sets the session's pk."""
    values = pg_commit._session_values(session, now)
    with connection.cursor() as cursor:
        cursor.execute(statements()["session"], [values[f"s_{f.attname}"] for f in pg_commit._session_fields()])
        session.pk = cursor.fetchone()[0]
        session._state.adding = False
        cursor.execute(_insert(len(rows)), _message_values(rows, session.pk, now))


def insert_unless_busy(
    *, session_pk: int, rows: list[dict[str, Any]], now: datetime, busy_since: datetime, history_as_of: datetime
) -> int:
    """Insert the turn's ``rows`` unless the session changed since ``history_as_of`` or a turn
    since ``busy_since`` is in progress; rows inserted (0: busy or stale)."""
    prep = _prep_datetime()
    params = _message_values(rows, session_pk, now)
    params += [session_pk, prep(history_as_of), session_pk, ChatMessage.Status.IN_PROGRESS, prep(busy_since)]
    with connection.cursor() as cursor:
        cursor.execute(_insert_unless_busy(len(rows)), params)
        return len(cursor.fetchall())


def _prep_datetime() -> Any:
    field = ChatMessage._meta.get_field("created_at")
    return lambda value: field.get_db_prep_value(value, connection)


def _message_values(rows: list[dict[str, Any]], session_pk: int, now: datetime) -> list[Any]:
    """The rows' values in ``_columns`` order, each through its field's ``get_db_prep_save``."""
    fields = pg_commit._message_fields()
    created = _prep_datetime()(now)
    values: list[Any] = []
    for row in rows:
        values += [field.get_db_prep_save(row[field.attname], connection) for field in fields]  # KeyError: unfilled
        values += [session_pk, created]
    return values


@cache
def _insert(count: int) -> str:
    """The messages' INSERT for ``count`` rows."""
    table, columns, pk = _columns()
    row = f"({', '.join(['%s'] * (len(pg_commit.MESSAGE_COLUMNS) + 2))})"
    return f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * count)} RETURNING {pk}"


@cache
def _insert_unless_busy(count: int) -> str:
    """The messages' INSERT for ``count`` rows, into a session unchanged and not busy."""
    table, columns, pk = _columns()
    return (
        _insert(count)
        .replace(" VALUES ", " SELECT * FROM (VALUES ", 1)
        .replace(
            f" RETURNING {pk}", f") WHERE {statements()['unchanged']} AND NOT {statements()['busy']} RETURNING {pk}"
        )
    )


@cache
def _columns() -> tuple[str, str, str]:
    quote, meta = connection.ops.quote_name, ChatMessage._meta
    names = [meta.get_field(name).column for name in (*pg_commit.MESSAGE_COLUMNS, "session", "created_at")]
    return quote(meta.db_table), ", ".join(quote(name) for name in names), quote(meta.pk.column)


@cache
def statements() -> dict[str, str]:
    """The session's INSERT and the two checks of a session that exists, from the models' names."""
    pg_commit._check_filled()
    quote, meta, session_meta = connection.ops.quote_name, ChatMessage._meta, ChatSession._meta
    session_fields = pg_commit._session_fields()
    session_table, session_pk = quote(session_meta.db_table), quote(session_meta.pk.column)
    column = {name: quote(meta.get_field(name).column) for name in ("session", "status", "created_at")}
    updated_at = quote(session_meta.get_field("updated_at").column)
    return {
        "session": (
            f"INSERT INTO {session_table} ({', '.join(quote(f.column) for f in session_fields)})"
            f" VALUES ({', '.join(['%s'] * len(session_fields))}) RETURNING {session_pk}"
        ),
        "unchanged": f"EXISTS (SELECT 1 FROM {session_table} WHERE {session_pk} = %s AND {updated_at} = %s)",
        "busy": (
            f"EXISTS (SELECT 1 FROM {quote(meta.db_table)} WHERE {column['session']} = %s"
            f" AND {column['status']} = %s AND {column['created_at']} >= %s)"
        ),
    }
