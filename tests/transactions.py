"""Count the database transactions a piece of code commits, on any backend.

A transaction here is what the server commits: an outermost ``atomic`` block (or any
other commit) that ran at least one statement, or one statement run outside a
transaction (autocommit), or a transaction sent as one query (``BEGIN; …; COMMIT``, with what
follows its COMMIT counted as one more). Savepoints are not transactions. ``TransactionLog`` keeps
each transaction's statements, so a failing count says which ones were added.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from django.db import connection as default_connection


class TransactionLog:
    def __init__(self) -> None:
        self.committed: list[list[str]] = []
        self.rolled_back: list[list[str]] = []
        self._open: list[str] = []

    def __len__(self) -> int:
        return len(self.committed)

    def describe(self) -> str:
        lines = []
        for number, statements in enumerate(self.committed, start=1):
            lines.append(f"transaction {number}:")
            lines.extend(f"    {sql[:160]}" for sql in statements)
        return "\n".join(lines)


@contextmanager
def count_transactions(connection: Any = default_connection) -> Iterator[TransactionLog]:
    """Log the transactions ``connection`` (this thread's) commits or rolls back inside the block."""
    log = TransactionLog()

    def execute(run: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        batch, sent_with_commit, after = sql.partition("; COMMIT")
        if sent_with_commit and sql.upper().startswith("BEGIN") and connection.get_autocommit():
            # A transaction sent as one query (rivya_api.common.pg_batch): it, and what runs after its COMMIT.
            log.committed.append([batch])
            if after.strip(" ;"):
                log.committed.append([after.strip(" ;")])
        # SQLite's BEGIN goes through a cursor too: it opens the transaction, it is not one.
        elif connection.in_atomic_block or not connection.get_autocommit() or sql.upper().startswith("BEGIN"):
            log._open.append(sql)
        else:
            log.committed.append([sql])
        return run(sql, params, many, context)

    commit, rollback = connection._commit, connection._rollback

    def counted_commit() -> None:
        commit()
        if log._open:
            log.committed.append(log._open)
            log._open = []

    def counted_rollback() -> None:
        rollback()
        if log._open:
            log.rolled_back.append(log._open)
            log._open = []

    with ExitStack() as stack:
        stack.enter_context(connection.execute_wrapper(execute))
        connection._commit, connection._rollback = counted_commit, counted_rollback
        stack.callback(delattr, connection, "_rollback")
        stack.callback(delattr, connection, "_commit")
        yield log


@contextmanager
def default_isolation(level: str = "repeatable read") -> Iterator[None]:
    """This connection's default isolation is ``level`` in the block (PostgreSQL; as ALTER DATABASE or
    ROLE SET would make it); at the block's end it still is (a batch names its own per transaction)."""
    with default_connection.cursor() as cursor:
        cursor.execute(f"SET default_transaction_isolation = '{level}'")
    try:
        yield
        with default_connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            assert cursor.fetchone() == (level,)  # the default the batches overrode
    finally:
        with default_connection.cursor() as cursor:
            cursor.execute("RESET default_transaction_isolation")
