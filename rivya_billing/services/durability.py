"""Early lock release: a wallet's row lock is not held through the commit's WAL flush.

A transaction that writes a wallet keeps the wallet's row lock until it commits,
and a synchronous commit releases it only after its WAL is flushed to disk. On a
hot wallet that flush is most of the time the row is locked, so every other
writer of the wallet queues behind one fsync after another
(``bench/ledger_reserve.py``). Instead, a transaction that writes a wallet
commits asynchronously (``synchronous_commit = off`` for that transaction
alone: it releases its locks as soon as it is logically committed) and then,
before the service returns or any of the transaction's ``on_commit`` callbacks
runs, a small synchronous commit flushes the WAL. WAL is flushed in order, so
that flush covers the wallet's transaction; concurrent flushes share one fsync,
outside any row lock.

The caller sees what a synchronous commit gives: nothing returns, and no
callback acts on the work, before it is as durable as the server's
``synchronous_commit`` makes any commit. The difference is only for other
transactions: for the length of one flush they can read a change that a crash
in that instant would undo (a concurrent reservation may be refused for credits
held by a reservation that is then lost). Any write that builds on the change
commits after it in the WAL and so cannot outlive it.
``RIVYA_BILLING["EARLY_LOCK_RELEASE"] = False`` holds the lock through the flush.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import connection

from rivya_billing.conf import billing_settings

# For the current transaction only (the reservation function does the same in its statement).
ASYNC_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"
# The smallest transaction that writes WAL (a transactional logical-decoding message; no
# table is touched, any role may call it): its synchronous commit flushes the WAL up to
# its own commit record, and with it every commit before it. (A transaction that only
# takes an id writes no record before its commit and is not flushed synchronously.)
FLUSH = "SELECT pg_logical_emit_message(true, 'rivya_billing', '')"


def early_release() -> bool:
    """Whether wallet writes on this connection commit early (PostgreSQL and the setting on)."""
    return connection.vendor == "postgresql" and billing_settings.EARLY_LOCK_RELEASE


def commit_early() -> None:
    """Make the current wallet-writing transaction release its locks before its WAL flush.

    Called before the wallet's row lock is taken, so that its round trip is not
    spent under the lock; once per transaction.
    """
    if not early_release() or flush_pending():
        return
    with connection.cursor() as cursor:
        cursor.execute(ASYNC_COMMIT)
    flush_after_commit()


def flush_after_commit() -> None:
    """Flush the WAL once the current transaction commits, before its other callbacks run.

    Outside a transaction (a single autocommit statement that committed
    asynchronously) the flush runs at once.
    """
    if not connection.in_atomic_block:
        wal_flush()
        return
    if flush_pending():
        return
    # Django runs on_commit callbacks in the order they were added; this one goes first so
    # that no callback (a queued task, a live update) acts on work that is not yet durable.
    on_commit_first(wal_flush)


def on_commit_first(func: Callable[[], None]) -> None:
    """``transaction.on_commit(func)``, but run before the callbacks added earlier.

    Django has no public way to say this: the entry is written in the shape
    ``transaction.on_commit`` gives ``connection.run_on_commit`` (the savepoint ids make
    a rolled-back savepoint drop it, the flag says not robust). A test compares the
    two shapes on every database, so a Django that changes it fails loudly.
    """
    connection.run_on_commit.insert(0, (set(connection.savepoint_ids), func, False))


def flush_pending() -> bool:
    """Whether this transaction already flushes on commit (and so commits asynchronously).

    A flush added inside a savepoint goes when the savepoint rolls back, and so does
    the setting made there: the two come and go together.
    """
    return any(func is wal_flush for _, func, _ in connection.run_on_commit)


def wal_flush() -> None:
    with connection.cursor() as cursor:
        cursor.execute(FLUSH)
