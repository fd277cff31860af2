"""Check a pooled PostgreSQL connection on checkout without a round trip when it was checked lately.

With ``CONN_HEALTH_CHECKS`` and Django's psycopg pool, every checkout runs psycopg_pool's
``check_connection``: an empty query, one round trip, which PostgreSQL counts as a
transaction. A Celery worker checks its connection out for every task (``config.celery``
hands it back after each), so a no-op generation's three transactions became four
(issue 25).

This check, installed on each pool the first time it hands out a connection, does that
round trip only when the connection's last full check is older than
``RIVYA_API["DB_POOL_FULL_CHECK_EVERY"]`` seconds (default 2; on a busy worker that still skips nearly
every checkout). In between it asks libpq and the socket:
the connection must be open, not broken, idle (no transaction), and have nothing waiting
to be read. A server that ended the session (a restart, ``idle_session_timeout``, a
proxy closing it) sends its goodbye and closes the socket, which makes it readable: that
connection gets the full check, fails it and is replaced, as before. A server side that
vanished without a goodbye (a failover to a standby behind the same address, a host reboot:
the new host answers the next write with a RST) leaves a quiet socket, so a connection handed
out within that many seconds of its last full check fails its first query, where the round
trip would have replaced it: hence a short window. 0: psycopg_pool's check on every checkout.

The full check itself, with ``RIVYA_API["DB_POOL_CHECK_SYNC"]`` (the default) and a libpq with
pipelines, is a pipeline's Sync message alone instead of psycopg_pool's empty query: the server
answers it (ReadyForQuery) after the same round trip, a dead connection fails it the same way,
but it starts no transaction, so PostgreSQL counts none (an empty query is one: a busy worker's
pooled connection added one every ``DB_POOL_FULL_CHECK_EVERY`` seconds to its jobs' count).

Reaches into ``ConnectionPool._check`` (psycopg_pool 3.2/3.3): if that attribute is not
the stock check, nothing is changed. ``tests/test_pool_check.py`` runs both ways.
"""

from __future__ import annotations

import select
import time
import weakref
from typing import Any

from rivya_api.conf import api_settings

_full_checks: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def install_on_created(sender: Any, connection: Any, **_: Any) -> None:
    """``connection_created`` receiver: give this connection's pool the quick check (once)."""
    if connection.vendor != "postgresql" or float(api_settings.DB_POOL_FULL_CHECK_EVERY) <= 0:
        return
    pool = getattr(connection, "pool", None)
    if pool is None:
        return
    from psycopg_pool import ConnectionPool

    if getattr(pool, "_check", None) is ConnectionPool.check_connection:
        pool._check = check


def check(conn: Any) -> None:
    """The pool's check: psycopg_pool's round trip, unless a recent one and a quiet socket vouch for ``conn``."""
    from psycopg_pool import ConnectionPool

    now = time.monotonic()
    last = _full_checks.get(conn)
    if last is not None and now - last < float(api_settings.DB_POOL_FULL_CHECK_EVERY) and _quiet(conn):
        return
    if api_settings.DB_POOL_CHECK_SYNC and _idle(conn):
        with conn.pipeline():  # a Sync message alone: raises if the connection is unusable
            pass
    else:
        ConnectionPool.check_connection(conn)  # raises if the connection is unusable: the pool replaces it
    _full_checks[conn] = now


def _idle(conn: Any) -> bool:
    """Whether a Sync can stand for the empty query: libpq has pipelines, and no transaction is open."""
    from psycopg import Pipeline, pq

    return Pipeline.is_supported() and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE


def _quiet(conn: Any) -> bool:
    """Open, not broken, idle, and nothing from the server waiting on its socket."""
    from psycopg import pq

    if conn.closed or conn.broken:
        return False
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)
