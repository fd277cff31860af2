"""The PostgreSQL fast path of a chat turn's rows in ``chat_turn_commit``: fewer statements, none compiled per turn.

The plain path saves a new session (an ORM INSERT) and then the turn's messages (``bulk_create``),
or, for a session that exists, locks it, checks that no turn is in progress (an ``EXISTS``) and
inserts the messages: two or three statements, each compiled by the ORM on every turn. Here:

* a new session and its messages are one statement: ``WITH s AS (INSERT … session RETURNING id)
  INSERT … messages SELECT … FROM s, unnest(…)``;
* a session that exists is locked as before (``SELECT … FOR UPDATE``, its own statement, so that the
  check below takes its snapshot after the lock: a turn that committed while this one waited is
  seen), then one ``INSERT … SELECT … WHERE NOT EXISTS (a turn in progress)``: no row inserted means
  the session is busy.

The statements are built once from the models' own table and column names (the account model is
the host's), and every column of ``ChatMessage`` and ``ChatSession`` must be named here
(``MESSAGE_COLUMNS``, ``SESSION_COLUMNS``): a field added to either model without one makes
``statements`` fail, and the plain path runs (``services._turn_rows_write``). The new session's
values go through each field's ``pre_save`` and ``get_db_prep_save``, as in the ORM's INSERT, but
no ``pre_save``/``post_save`` signal is sent.
The rows are those the plain path writes, but for their ``created_at``: the plain path takes
``now`` once per row, this one once per turn (history is read in ``(created_at, pk)`` order, which
is the same). The hold is billing's one statement, taken without a savepoint of its own
(``holds._reserve_joined``): a refusal or an error ends the commit's transaction, which a refusal
ends anyway (``services._commit``), so its SAVEPOINT and RELEASE are two round trips saved.

Batched (``commit_batched``, outside a transaction): those statements are sent in one round trip
instead of five or six (BEGIN, the lock, the rows, the hold, COMMIT, the WAL flush of early lock
release): ``BEGIN; [lock;] rows and hold; COMMIT; <flush>``, one simple-protocol query (psycopg 3
and Django's client-side binding, which quotes every parameter in Python: the rows travel as one
JSON parameter, ``json_to_recordset``, not one array per column), each statement with a snapshot of
its own as above. Its ``BEGIN`` names READ COMMITTED (``BEGIN``), which the lock-then-check needs,
whatever a host's ``OPTIONS["isolation_level"]`` or ``default_transaction_isolation`` says. The rows check that
the session's ``updated_at`` is still the history's; the hold (``pg_reserve._joined_call``) is
taken only once they are in (a one-time filter); a hold refused for want of credits fails its
statement, and a row without a hold (no wallet) fails it too (a cast of a text that is no number):
either ends the batch before its COMMIT, and it is rolled back. So a committed batch is an accepted
turn; busy or stale commits an empty transaction (nothing inserted, nothing held), and anything
refused inside the transaction is rolled back: the commit above then runs, decides and says it (its
refusals and their ``available`` stay that path's alone). An error at or after the COMMIT is
raised (the turn may be written), as the plain commit's flush failing after its COMMIT is. The
wallet's row lock is no longer held across a client round trip (the hold and its COMMIT travel
together).

A refused batch's statement, with the turn's messages in its JSON, reaches the PostgreSQL server
log under ``log_min_error_statement`` (default ``error``); the plain path's failing statements hold
ids and amounts only. So a turn with a key's spend limit (whose refusal is common: a client
retrying past its limit) takes the plain path; the batch's refusals are the rare ones, an account
without a wallet or credits spent between the wallet read of ``chat_turn_prepare`` and the commit.
A failure that is no refusal is logged (its SQLSTATE only) before the plain commit runs.

``RIVYA_API["CHAT_TURN_COMMIT_SQL"] = False`` switches it off (SQLite has its own, ``sqlite_commit``),
``CHAT_TURN_COMMIT_BATCHED = False`` the batches only; ``tests/rivya_api/chat/test_pg_commit.py``
compares the three paths row by row and races turns.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from functools import cache
from typing import Any

from django.db import DatabaseError, connection

from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.common.pg_batch import BEGIN, failed_inside, one_query_possible, send
from rivya_api.conf import api_settings
from rivya_billing.services import durability, pg_reserve
from rivya_core.rows import saves_heard

logger = logging.getLogger(__name__)

IN_PROGRESS = ChatMessage.Status.IN_PROGRESS
# The message columns a turn's rows give (``services._turn_rows``); the id, the session and
# ``created_at`` are the statement's. A column of the model not named here: the plain path.
MESSAGE_COLUMNS = (
    *("public_id", "role", "content", "attachments", "status", "turn_id", "finish_reason", "prompt_tokens"),
    *("completion_tokens", "credits_reserved", "credits_charged", "error_code", "metadata", "idempotency_key"),
    "completed_at",
)
STATEMENT_COLUMNS = {"id", "session_id", "created_at"}
# The batches' BEGIN: READ COMMITTED whatever default_transaction_isolation (ALTER DATABASE/ROLE SET) says,
# so a statement after the lock takes its snapshot after the wait (REPEATABLE READ would fail it: 40001).
RESERVE = "r_"  # the hold's parameters in the batched statements (pg_reserve._joined_params)
# The session fields a new session gives (``services._session_for_turn``, the fields' defaults), but the id.
SESSION_COLUMNS = (
    *("public_id", "account", "model", "title", "source", "message_count", "credits_spent", "created_at"),
    "updated_at",
)


def enabled() -> bool:
    """Whether a turn's rows take this path (not while a receiver listens to the session's saves: the
    plain path's ``session.save()`` sends ``pre_save``/``post_save``, this INSERT neither)."""
    return (
        connection.vendor == "postgresql"
        and bool(api_settings.CHAT_TURN_COMMIT_SQL)
        and _built()
        and not saves_heard(ChatSession)
    )


@cache
def _built() -> bool:
    """Whether the statements can be built for these models (else the plain path, said once)."""
    try:
        statements()
    except Exception:
        logger.exception("The chat turn's commit statements cannot be built; the plain path is used")
        return False
    return True


def batched(*, spend_limit: int | None) -> bool:
    """Whether this commit can be sent as one batch (``commit_batched``): the fast path is on, and
    so are ``CHAT_TURN_COMMIT_BATCHED`` and billing's one-statement hold, outside a transaction, with
    psycopg 3 and a cursor that binds on the client (psycopg2 keeps only a query's last result; a
    server-binding cursor refuses several statements), for a turn without a key's spend limit (its
    refusal, common for a client retrying past its limit, would fail the batch's statement, whose
    text holds the turn's messages, into the server log: the plain path's holds none)."""
    if spend_limit is not None or not enabled() or not api_settings.CHAT_TURN_COMMIT_BATCHED:
        return False
    return pg_reserve.enabled() and one_query_possible()


def commit_batched(
    *,
    session: ChatSession,
    new_session: bool,
    rows: list[dict[str, Any]],
    now: datetime,
    busy_since: datetime,
    history_as_of: Any,
    reserve: dict[str, Any],
) -> tuple[Any, ...] | None:
    """The turn's rows and its hold in one transaction sent as one query; the hold's row, or None.

    ``reserve``: the hold's parameters (``pg_reserve._joined_params``, prefix ``RESERVE``). The batch
    opens the transaction, locks a session that exists, inserts the rows (unless busy), reserves,
    commits and flushes the WAL (early lock release). None: nothing of the turn was written (busy
    or stale: an empty transaction committed; a refusal or an error inside the transaction: rolled
    back), and the caller's plain commit then decides and says it. An error at or after the COMMIT
    (the COMMIT itself, the flush, a lost connection) is raised, as the plain commit raises when
    its flush fails after its COMMIT: the turn may be written. A new session's pk is set once committed.
    """
    names = [field.attname for field in _message_fields()]
    # KeyError: a column this path does not fill.
    params = {"m_rows": json.dumps([{name: row[name] for name in names} for row in rows]), **reserve, "now": now}
    if new_session:
        params.update(_session_values(session, now))
    else:
        params.update(session=session.pk, busy_since=busy_since, history_as_of=history_as_of, in_progress=IN_PROGRESS)
    flush = f"; {durability.FLUSH}" if reserve[RESERVE + "commit_early"] else ""
    statement = statements()["batched_new" if new_session else "batched_existing"] + flush
    rows = send(statement, params, inside=_failed_before_commit)
    if rows is None:
        return None  # rolled back: no hold (the check's cast), a refusal or an error
    row = rows[1 if new_session else 2]  # past BEGIN's result and the lock's: the hold's
    if row is None:
        return None  # busy or stale: nothing was inserted or held (an empty transaction committed)
    if row[0] is None:  # the check above lets no such row through
        raise RuntimeError(f"The chat turn's batch committed without a hold: {row!r}")
    if new_session:
        session.pk = row[-2]
        session._state.adding = False
    return row


# A batch's refusals: for want of credits (NOT NULL), no hold (the check's cast), a repeated reference.
EXPECTED_REFUSALS = {pg_reserve.NOT_NULL_VIOLATION, "22P02", pg_reserve.UNIQUE_VIOLATION}


def _failed_before_commit(error: DatabaseError) -> bool:
    """Whether the batch failed inside its transaction (psycopg's INERROR): nothing of it is written.

    Any other state (idle: the COMMIT or the flush after it failed; a connection lost) may have
    written the turn. Another error than a refusal is logged (its SQLSTATE, never the statement,
    which holds the turn's messages): a batch that always fails would be paid for on every turn.
    """
    if not failed_inside(error):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate not in EXPECTED_REFUSALS:
        logger.warning("The chat turn's batch failed (SQLSTATE %s); the plain commit runs", sqlstate)
    return True


def insert_new_session(*, session: ChatSession, rows: list[dict[str, Any]], now: datetime) -> int:
    """Insert the unsaved ``session`` and the turn's message ``rows``; sets the session's pk. Rows inserted."""
    params = {**_message_arrays(rows), **_session_values(session, now), "now": now}
    with connection.cursor() as cursor:
        cursor.execute(statements()["new"], params)
        ids = cursor.fetchall()
    session.pk = ids[0][1]
    session._state.adding = False
    return len(ids)


def lock_session(session_pk: int) -> Any:
    """The session's ``updated_at``, under its row lock; None when it is gone."""
    with connection.cursor() as cursor:
        cursor.execute(statements()["lock"], {"session": session_pk})
        row = cursor.fetchone()
    return None if row is None else row[0]


def insert_unless_busy(*, session_pk: int, rows: list[dict[str, Any]], now: datetime, busy_since: datetime) -> int:
    """Insert the turn's message ``rows`` unless a turn since ``busy_since`` is in progress; rows inserted (0: busy)."""
    params = {**_message_arrays(rows), "now": now, "session": session_pk, "busy_since": busy_since}
    params["in_progress"] = IN_PROGRESS
    with connection.cursor() as cursor:
        cursor.execute(statements()["existing"], params)
        return len(cursor.fetchall())


def _message_arrays(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """One array per message column, in the rows' order (JSON columns as their text)."""
    arrays: dict[str, list[Any]] = {}
    for field in _message_fields():
        values = [row[field.attname] for row in rows]  # KeyError: a column this path does not fill
        if field.get_internal_type() == "JSONField":
            values = [json.dumps(value) for value in values]
        arrays[f"m_{field.attname}"] = values
    return arrays


def _message_fields() -> list[Any]:
    return [ChatMessage._meta.get_field(name) for name in MESSAGE_COLUMNS]


def _session_fields() -> list[Any]:
    return [ChatSession._meta.get_field(name) for name in SESSION_COLUMNS]


def _session_values(session: ChatSession, now: datetime) -> dict[str, Any]:
    """The new session's values as the ORM's INSERT gives them (``pre_save``, ``get_db_prep_save``).

    Its automatic times are the turn's ``now``, as its messages' ``created_at``.
    """
    values = {}
    for field in _session_fields():
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            setattr(session, field.attname, now)
            value = now
        else:
            value = field.pre_save(session, True)
        values[f"s_{field.attname}"] = field.get_db_prep_save(value, connection)
    return values


def _check_filled() -> None:
    """A column this module does not fill fails here (``_built``: the plain path runs), not in a turn."""
    unknown = {f.attname for f in ChatMessage._meta.concrete_fields} - STATEMENT_COLUMNS - set(MESSAGE_COLUMNS)
    if unknown:
        raise LookupError(f"ChatMessage columns without a value in pg_commit: {sorted(unknown)}")
    unknown = {f.name for f in ChatSession._meta.concrete_fields} - {"id", *SESSION_COLUMNS}
    if unknown:
        raise LookupError(f"ChatSession columns without a value in pg_commit: {sorted(unknown)}")


@cache
def statements() -> dict[str, str]:
    """The statements, from the models' table and column names (``batched_*``: ``commit_batched``'s)."""
    quote = connection.ops.quote_name
    meta, session_meta = ChatMessage._meta, ChatSession._meta
    _check_filled()
    fields, session_fields = _message_fields(), _session_fields()
    table, session_table = quote(meta.db_table), quote(session_meta.db_table)
    pk, session_pk = quote(meta.pk.column), quote(session_meta.pk.column)
    session_column = quote(meta.get_field("session").column)
    created = quote(meta.get_field("created_at").column)
    columns = ", ".join(quote(field.column) for field in fields) + f", {session_column}, {created}"
    names = [f"c{index}" for index in range(len(fields))]
    arrays = ", ".join(f"%(m_{field.attname})s::{_array_type(field)}" for field in fields)
    unnest = f"unnest({arrays}) WITH ORDINALITY AS m({', '.join(names)}, ord)"
    values = ", ".join(_value(name, field) for name, field in zip(names, fields, strict=True))
    session_insert = (
        f"INSERT INTO {session_table} ({', '.join(quote(f.column) for f in session_fields)})"
        f" VALUES ({', '.join(f'%(s_{f.attname})s' for f in session_fields)}) RETURNING {session_pk}"
    )
    new = (
        f"INSERT INTO {table} ({columns})"
        f" SELECT {values}, s.{session_pk}, %(now)s FROM s, {unnest} ORDER BY m.ord"
        f" RETURNING {pk}, {session_column}"
    )
    busy = (
        f"SELECT 1 FROM {table} AS b WHERE b.{session_column} = %(session)s"
        f" AND b.{quote(meta.get_field('status').column)} = %(in_progress)s AND b.{created} >= %(busy_since)s"
    )
    existing = (
        f"INSERT INTO {table} ({columns}) SELECT {values}, %(session)s, %(now)s FROM {unnest} WHERE NOT EXISTS ({busy})"
    )
    order = f" ORDER BY m.ord RETURNING {pk}"
    updated_at = quote(session_meta.get_field("updated_at").column)
    session_row = f"SELECT {updated_at} FROM {session_table} WHERE {session_pk} = %(session)s"
    # The hold is taken only once the rows are in (a one-time filter): a busy session's batch reserves nothing.
    # No hold (no wallet; a key limit's refusal, were such a turn batched) ends the batch before its
    # COMMIT: the cast of a text that is no number fails, and only then (a constant would fail when
    # the statement is planned).
    refused = "concat('rivya chat turn refused: no hold; limit refused=', coalesce(r.limit_refused::text, 'n/a'))"
    hold = (
        f" SELECT r.*, SESSION, (CASE WHEN r.reserved_hold_id IS NULL THEN {refused} END)::int"
        f" FROM ({pg_reserve._joined_call(RESERVE)}) AS r WHERE EXISTS (SELECT 1 FROM inserted); COMMIT"
    )
    statements_new, statements_existing = f"WITH s AS ({session_insert}) {new}", existing + order
    unchanged = f" AND EXISTS ({session_row} AND {updated_at} = %(history_as_of)s)"  # no turn ended since
    # The batches take the rows as one JSON parameter: quoted at once, not array by array (client-side binding).
    types = ", ".join(f"{quote(field.attname)} {_array_type(field)[:-2]}" for field in fields)
    recordset = (
        f"ROWS FROM (json_to_recordset(%(m_rows)s::json) AS ({types})) WITH ORDINALITY AS m({', '.join(names)}, ord)"
    )
    new, existing = new.replace(unnest, recordset), existing.replace(unnest, recordset)
    batched = {
        # commit_batched's batches: BEGIN, a session's lock (its own statement, as above), rows, hold, COMMIT.
        "batched_new": f"{BEGIN} WITH s AS ({session_insert}), inserted AS ({new})"
        + hold.replace("SESSION", f"(SELECT {session_pk} FROM s)"),
        "batched_existing": f"{BEGIN} {session_row} FOR UPDATE; WITH inserted AS ({existing}{unchanged}{order})"
        + hold.replace("SESSION", "%(session)s"),
    }
    return {"new": statements_new, "existing": statements_existing, "lock": f"{session_row} FOR UPDATE", **batched}


def _value(name: str, field: Any) -> str:
    # JSON travels as text (an array of jsonb would be adapted per element): cast back here.
    return f"{name}::jsonb" if field.get_internal_type() == "JSONField" else name


def _array_type(field: Any) -> str:
    """The array type of ``field``'s column (JSON columns travel as text, cast by the column).

    Without the column's length: an explicit cast to ``varchar(n)`` cuts a longer value short, the
    INSERT's own cast refuses it (``DataError``), as the plain path's INSERT does.
    """
    if field.get_internal_type() == "JSONField":
        return "text[]"
    return re.sub(r"\([^)]*\)", "", field.db_type(connection)) + "[]"
