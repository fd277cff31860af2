"""A barrier-released concurrency driver for ledger tests: real threads, each on its own connection.

``run_concurrently(200, op)`` runs ``op(i)`` for i in 0..199 from as many
threads as the database can give a connection each (up to one thread per
operation). Every thread opens its connection first, then all of them wait on
one ``threading.Barrier`` and start together; each returns its connection at the
end. Results are returned in operation order as ``Outcome`` values, exceptions
included, so tests count winners and losers exactly.

PostgreSQL's ``max_connections`` (100 by default, shared with everything else on
the server) can be lower than the number of operations: then each thread runs
several operations back to back after the barrier. ``RIVYA_TEST_MAX_THREADS``
caps the thread count explicitly; the count used is reported on the result.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, connections, transaction

# Connections left free for the test's own connection, other sessions and other users of the server.
CONNECTION_HEADROOM = 15


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Run(list):
    """The outcomes of one concurrent run, in operation order."""

    threads: int = 0

    def winners(self) -> list[Any]:
        return [o.value for o in self if o.ok]

    def errors(self) -> Counter:
        return Counter(type(o.error).__name__ for o in self if not o.ok)

    def unexpected(self, *expected: type[BaseException]) -> list[BaseException]:
        return [o.error for o in self if o.error is not None and not isinstance(o.error, expected)]


def free_connections() -> int:
    """How many more connections this database takes from us right now (PostgreSQL), else a large number."""
    if connection.vendor != "postgresql":
        return 1000
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_connections')::int - (SELECT count(*) FROM pg_stat_activity)")
        return int(cursor.fetchone()[0])


def thread_count(operations: int) -> int:
    limit = int(os.environ.get("RIVYA_TEST_MAX_THREADS") or 0) or operations
    budget = free_connections() - CONNECTION_HEADROOM
    threads = max(1, min(operations, limit, budget))
    if threads < min(operations, 8):
        raise RuntimeError(f"Only {budget} free database connections for a concurrency test; need at least 8.")
    return threads


def run_concurrently(operations: int, op: Callable[[int], Any], *, threads: int | None = None) -> Run:
    """Run ``op(i)`` for every i in ``range(operations)`` concurrently; see the module docstring."""
    threads = threads or thread_count(operations)
    barrier = threading.Barrier(threads, timeout=120)
    results: list[Outcome | None] = [None] * operations
    crashes: list[str] = []

    def worker(index: int) -> None:
        try:
            connection.ensure_connection()  # this thread's own connection, opened before the start line
            barrier.wait()
            for i in range(index, operations, threads):
                try:
                    results[i] = Outcome(value=op(i))
                except Exception as exc:  # counted by the test, not swallowed
                    results[i] = Outcome(error=exc)
        except BaseException:
            crashes.append(traceback.format_exc())
            barrier.abort()
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker, args=(n,), name=f"ledger-{n}") for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(300)
    if crashes:
        raise AssertionError("A worker thread crashed before or at the barrier:\n" + crashes[0])
    run = Run(result if result is not None else Outcome(error=RuntimeError("not run")) for result in results)
    run.threads = threads
    return run


def committed_meanwhile(update: Callable[[], Any], *, seconds: float = 0.5) -> threading.Event:
    """Another transaction, on a thread and connection of its own, runs ``update()`` and keeps its
    row locks ``seconds`` before it commits: returns once it holds them, with an event set when it
    has ended. What a batch that waits for one of those locks must see (at READ COMMITTED, the
    committed row; at REPEATABLE READ its locking read would fail, 40001)."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                update()
                held.set()
                time.sleep(seconds)
        finally:
            connections.close_all()
            done.set()

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(10)
    return done
