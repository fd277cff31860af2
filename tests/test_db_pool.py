"""``config.db_pool.check_connection`` against the pool's own check, on connections the server cut.

Both must hand out only working connections after the server ended one (here with
``pg_terminate_backend``, as a restart or an idle timeout would); the one in
``config.db_pool`` must do it without a round trip for a healthy idle connection.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from config import db_pool

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CHECKS = {"when_readable": db_pool.check_connection, "round_trip": ConnectionPool.check_connection}


@pytest.fixture
def conninfo():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{name: value for name, value in params.items() if name in ("dbname", "user", "password", "host", "port")}
    )


def make_pool(conninfo: str, check) -> ConnectionPool:
    return ConnectionPool(conninfo, min_size=1, max_size=1, check=check, kwargs={"autocommit": True}, open=True)


def terminate(conninfo: str, pid: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    time.sleep(0.2)  # the server's FATAL and end of file reach the socket


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_a_connection_the_server_cut_is_replaced(conninfo, check):
    with make_pool(conninfo, CHECKS[check]) as pool:
        with pool.connection() as conn:
            cut = conn.info.backend_pid
        terminate(conninfo, cut)
        with pool.connection() as conn:
            assert conn.info.backend_pid != cut
            assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_a_healthy_connection_is_handed_out_again(conninfo, check, monkeypatch):
    round_trips = []
    real = ConnectionPool.check_connection
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(lambda c: round_trips.append(c) or real(c)))
    checks = {"when_readable": db_pool.check_connection, "round_trip": ConnectionPool.check_connection}
    with make_pool(conninfo, checks[check]) as pool:
        pids = []
        for _ in range(3):
            with pool.connection() as conn:
                pids.append(conn.info.backend_pid)
                conn.execute("SELECT 1")
        assert len(set(pids)) == 1
        assert len(round_trips) == (0 if check == "when_readable" else 3)


def test_the_check_alone_on_healthy_cut_and_closed_connections(conninfo, monkeypatch):
    round_trips = []
    real = ConnectionPool.check_connection
    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(lambda c: round_trips.append(c) or real(c)))
    conn = psycopg.connect(conninfo, autocommit=True)
    db_pool.check_connection(conn)  # healthy and idle: no round trip
    assert round_trips == []
    terminate(conninfo, conn.info.backend_pid)
    with pytest.raises(psycopg.OperationalError):
        db_pool.check_connection(conn)
    assert round_trips == [conn]  # the socket had something to say: the full check said it
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        db_pool.check_connection(conn)


@pytest.mark.parametrize("on", [True, False])
def test_the_setting_chooses_the_check(settings, on):
    if connection.vendor != "postgresql" or connection.pool is None:
        pytest.skip("needs PostgreSQL with a pool")
    settings.DATABASE_POOL_CHECK_WHEN_READABLE = on
    connection.close()
    connection.ensure_connection()
    assert connection.pool._check is (db_pool.check_connection if on else ConnectionPool.check_connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
