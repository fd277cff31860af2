"""Database work from async code: one short worker-thread call that gives its connection back.

``db_call`` is how an async view or a chat turn reaches the ORM: no database
connection and no thread is held while a model produces or a client waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

T = TypeVar("T")


def release_connections() -> None:
    """Give back this thread's database connections before waiting on a model.

    A server database's connection is closed, which returns it to the pool
    (CONN_MAX_AGE is 0), so no connection stays checked out while tokens are
    awaited. SQLite's is kept: it holds nothing on a server, and closing a WAL
    database costs a checkpoint (about 10 ms) on every step of every turn.
    A connection inside a transaction (a test's) is left alone.
    """
    for connection in connections.all(initialized_only=True):
        if connection.vendor != "sqlite" and not connection.in_atomic_block:
            connection.close()


def _call_and_release(fn: Callable[..., T], args: tuple, kwargs: dict[str, Any]) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        release_connections()


async def db_call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run the sync ``fn(*args, **kwargs)`` in a worker thread, then give its connection back.

    Not thread-sensitive: a turn outlives its request, and the worker threads
    (and their connections, where they are kept) are shared by all turns.
    """
    return await sync_to_async(_call_and_release, thread_sensitive=False)(fn, args, kwargs)
