"""A transaction sent as one query: ``BEGIN; <statements>; COMMIT; <flush>`` (simple protocol).

Shared by the batches that cut a transaction's round trips to one: a chat turn's rows
(``rivya_api.chat.pg_commit.commit_batched``), a chat turn's end (``rivya_api.chat.pg_finish``)
and a generation's success (``rivya_api.generations.pg_finish``). Each needs psycopg 3 with a
client-binding cursor outside a transaction (``one_query_possible``), opens its transaction with
``BEGIN`` (READ COMMITTED, whatever the connection's default: a locking read then a statement whose
snapshot sees what committed during the lock wait), and after an error tells whether it failed
inside its transaction (nothing written: ``failed_inside``, then ``rollback``) or at or after its
COMMIT (it may be written).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection

BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED;"


def one_query_possible() -> bool:
    """Whether a transaction can be sent here as one query of several statements: outside a
    transaction, on psycopg 3 with a cursor that binds on the client (every batch asks)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block or not connection.get_autocommit():
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3  # PostgreSQL only: psycopg is installed

    if not is_psycopg3:
        return False
    import psycopg

    connection.ensure_connection()
    return issubclass(connection.connection.cursor_factory, psycopg.ClientCursor)


def failed_inside(error: DatabaseError) -> bool:
    """Whether a batch sent as one query failed inside its transaction (psycopg's INERROR), so that
    nothing of it is written; any other state (idle after its COMMIT, a connection lost) may have."""
    from psycopg.pq import TransactionStatus

    raw = connection.connection
    return raw is not None and raw.info.transaction_status == TransactionStatus.INERROR


def rollback() -> None:
    """End the batch's transaction if it is open, as Django would (its errors wrapped: a lost
    connection is Django's ``OperationalError``); nothing to do on a connection lost or idle."""
    from psycopg.pq import TransactionStatus

    raw = connection.connection
    if raw is not None and raw.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with connection.wrap_database_errors:
            raw.rollback()


def send(sql: str, params: Any, *, inside: Callable[[DatabaseError], bool]) -> list[Any] | None:
    """Send the transaction ``sql`` as one query: the first row of each of its results, in order
    (None for a result without rows: BEGIN's, COMMIT's), or None when it failed inside its
    transaction (``inside(error)``, which also logs what it should: nothing written, rolled back).
    Any other error is raised (at or after the COMMIT, or the connection lost: it may be written;
    a lost connection as Django's ``OperationalError``)."""
    sent = False
    try:
        with connection.cursor() as cursor:
            try:
                cursor.execute(sql, params)
            except DatabaseError as error:
                if inside(error):
                    return None  # rolled back below
                raise
            sent = True
            rows = []
            while True:
                rows.append(cursor.fetchone() if cursor.description is not None else None)
                if not cursor.nextset():
                    return rows
    finally:
        if not sent:
            rollback()


def logged(log: logging.Logger, batch: str) -> Callable[[DatabaseError], bool]:
    """``send``'s ``inside`` for a batch after whose every failure inside its transaction the plain
    path runs: it logs that ``batch`` failed, with the SQLSTATE only (never the statement, which
    holds the caller's data)."""

    def inside(error: DatabaseError) -> bool:
        if not failed_inside(error):
            return False  # at or after the COMMIT (or the connection lost): it may be written
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        log.warning("%s failed (SQLSTATE %s); the plain finish runs", batch, sqlstate)
        return True

    return inside
