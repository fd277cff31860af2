"""The pooled connection's checkout check (rivya_api.common.pool_check) against psycopg_pool's own
(``DB_POOL_FULL_CHECK_EVERY`` 0), on every database: the same connections work either way, the
round trip is skipped only for a connection checked lately, and a connection whose server ended
its session is never handed out. On SQLite there is no pool: nothing is installed."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import psycopg
import pytest
from django.db import connection

from rivya_api.common import pool_check

pytestmark = pytest.mark.django_db(transaction=True)
BOTH_WAYS = pytest.mark.parametrize("every", [2, 0], ids=["quick", "round-trip"])


@pytest.fixture
def round_trips(monkeypatch):
    """How many round-trip checks the connections ran: empty queries (psycopg_pool's check) and
    pipelines (``DB_POOL_CHECK_SYNC``'s Sync), each kind also listed in ``calls.kinds``."""
    calls = RoundTrips()
    this_thread = threading.get_ident()  # the pool checks in the thread taking the connection
    execute, pipeline = psycopg.Connection.execute, psycopg.Connection.pipeline

    def counted_execute(self, query, *args, **kwargs):
        if query == "" and threading.get_ident() == this_thread:  # not other tests' leftover threads
            calls.append(self)
            calls.kinds.append("empty query")
        return execute(self, query, *args, **kwargs)

    def counted_pipeline(self, *args, **kwargs):
        if threading.get_ident() == this_thread:
            calls.append(self)
            calls.kinds.append("sync")
        return pipeline(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counted_execute)
    monkeypatch.setattr(psycopg.Connection, "pipeline", counted_pipeline)
    return calls


class RoundTrips(list):
    kinds: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.kinds = []


def checkout_and_query() -> int:
    """Hand the connection back (to the pool, with one), take one again and use it."""
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT 1")
        return cursor.fetchone()[0]


@BOTH_WAYS
def test_checkouts_work_and_round_trip_only_when_due(rivya_settings, round_trips, every, monkeypatch):
    rivya_settings("RIVYA_API", DB_POOL_FULL_CHECK_EVERY=every)
    now = time.monotonic()  # frozen: the window cannot pass on a slow machine mid-test
    monkeypatch.setattr(pool_check, "time", SimpleNamespace(monotonic=lambda: now))
    # The suite's shared pool hands its idle connections out in turn, each last checked whenever
    # another test used it: so count per connection, not in all.
    handed, again = [], 0
    for _ in range(10):
        checkout_and_query()
        conn = getattr(connection, "connection", None)
        again += conn in handed
        handed.append(conn)
    pool = getattr(connection, "pool", None)
    if connection.vendor != "postgresql":
        assert pool is None
        assert round_trips == []
    elif every:
        assert pool._check is pool_check.check
        for conn in set(round_trips):
            # Once inside the window (twice for the first: psycopg_pool's own check before ours).
            assert round_trips.count(conn) <= (2 if conn is handed[0] else 1)
    else:
        assert len(round_trips) >= again  # every checkout of a pooled connection


def test_the_round_trip_comes_back_once_the_last_full_check_is_older_than_the_setting(
    rivya_settings, round_trips, monkeypatch
):
    rivya_settings("RIVYA_API", DB_POOL_FULL_CHECK_EVERY=2)
    if connection.vendor != "postgresql":
        return  # no pool, no check (the tests above show nothing is installed)
    clock = [1000.0]
    monkeypatch.setattr(pool_check, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    # A connection of its own: a pool shared with the rest of the suite hands out whichever it likes.
    conn = psycopg.connect(**own_connection_params())
    last_full, rechecked, skipped = None, 0, 0
    try:
        for step in (0, 0, 1.0, 0.9, 0.2, 0, 0.5, 2.5, 0, 0.3, 1.8):
            clock[0] += step
            before = len(round_trips)
            pool_check.check(conn)
            due = last_full is None or clock[0] - last_full >= 2
            assert (len(round_trips) > before) == due, (step, last_full, clock[0])
            rechecked += due and last_full is not None  # its window passed: the round trip came back
            skipped += not due
            if due:
                last_full = clock[0]
    finally:
        conn.close()
    assert rechecked
    assert skipped


def own_connection_params() -> dict:
    params = {**connection.get_connection_params(), "autocommit": True}
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return params


@BOTH_WAYS
def test_a_connection_whose_session_the_server_ended_is_replaced(rivya_settings, every):
    rivya_settings("RIVYA_API", DB_POOL_FULL_CHECK_EVERY=every)
    before = {checkout_and_query() for _ in range(3)}
    if connection.vendor == "postgresql":
        connection.close()  # back to the pool, idle
        # Only this test's sessions: other tests' threads keep theirs.
        with psycopg.connect(**own_connection_params()) as other:
            other.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(before)])
        time.sleep(0.2)  # the sessions' goodbyes reach their sockets
    after = {checkout_and_query() for _ in range(3)}
    if connection.vendor == "postgresql":
        assert not before & after  # every connection was replaced, none failed a query


def test_a_quiet_idle_connection_passes_and_a_closed_one_does_not(rivya_settings):
    if connection.vendor != "postgresql":
        pool_check.install_on_created(None, connection)  # no pool on this database: nothing to install
        assert getattr(connection, "pool", None) is None
        return
    conn = psycopg.connect(**own_connection_params())
    assert pool_check._quiet(conn)
    conn.execute("LISTEN rivya_pool_check_test")
    conn.execute("NOTIFY rivya_pool_check_test")  # delivered to its own session
    conn.close()
    assert not pool_check._quiet(conn)


@pytest.mark.postgres
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "empty-query"])
def test_the_full_check_is_a_sync_and_fails_on_a_dead_session(rivya_settings, round_trips, sync):
    """``DB_POOL_CHECK_SYNC``: the round trip is a pipeline's Sync (PostgreSQL counts no transaction
    for it), which a session the server ended fails as the empty query does."""
    rivya_settings("RIVYA_API", DB_POOL_FULL_CHECK_EVERY=2, DB_POOL_CHECK_SYNC=sync)
    conn = psycopg.connect(**own_connection_params())
    try:
        pool_check.check(conn)
        assert round_trips.kinds == ["sync" if sync else "empty query"]
        with psycopg.connect(**own_connection_params()) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        pool_check._full_checks.pop(conn)  # due again
        time.sleep(0.2)  # the goodbye reaches the socket; a full check must fail on it either way
        with pytest.raises(psycopg.OperationalError):
            pool_check.check(conn)
    finally:
        conn.close()
