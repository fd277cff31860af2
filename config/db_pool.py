"""The PostgreSQL pool's health check without a round trip for a connection that is plainly fine.

Django's pool with ``CONN_HEALTH_CHECKS`` checks each connection as it is handed out
with ``ConnectionPool.check_connection``: an empty query, one round trip to the server
before every request's (and every chat turn step's) first query. A connection the
server closed (a restart, an administrator's ``pg_terminate_backend``, an idle timeout)
has been told so on its socket (the server's FATAL message, then end of file), so its
socket is readable while the connection sits idle in the pool; a healthy idle one has
nothing to read. ``check_connection`` here polls the socket (no round trip) and runs
the pool's own check only when it has something to say, when libpq already knows the
connection is bad, or when it is not idle. A server that vanished without a word (a
host lost to a network partition) is caught by neither check in time: the pool's own
would wait for TCP to give up, and the first query here does the same.

Django builds the pool itself and passes it ``ConnectionPool.check_connection`` when
``CONN_HEALTH_CHECKS`` is on (a ``check`` in the pool's options would clash with it), so
``_pool_check_chosen``, a ``connection_created`` receiver, sets the pool's ``_check``
(psycopg_pool's, not public) to the check the setting names. With
``DATABASE_POOL_CHECK_WHEN_READABLE = False`` (environment: the same name) the pool
keeps Django's check; ``tests/test_db_pool.py`` runs both against connections the
server cut.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.conf import settings
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from psycopg import pq
from psycopg_pool import ConnectionPool


def check_connection(conn: Any) -> None:
    """The pool's ``check``: return quietly if ``conn`` may be used, else raise (the pool then replaces it)."""
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    if conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        ConnectionPool.check_connection(conn)
        return
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable:  # the server said something while the connection sat idle: most likely goodbye
        ConnectionPool.check_connection(conn)


@receiver(connection_created)
def _pool_check_chosen(sender: Any, connection: Any, **kwargs: Any) -> None:
    pool = getattr(connection, "pool", None)  # PostgreSQL with a pool only
    if pool is None or getattr(pool, "_check", None) is None:  # no health checks asked for
        return
    wanted = check_connection if getattr(settings, "DATABASE_POOL_CHECK_WHEN_READABLE", False) else None
    pool._check = wanted or ConnectionPool.check_connection
