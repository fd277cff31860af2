"""The no-op jobs' floor (bench/job_floor.py): its task makes a generation's round trips, once per row."""

from __future__ import annotations

import psycopg
import pytest
import redis
from django.core.files.storage import default_storage
from django.db import connection

from bench import job_floor
from bench.noop import PIXEL_PNG

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dsn(monkeypatch, settings, tmp_path):
    params = connection.get_connection_params()
    dsn = psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
    )
    monkeypatch.setenv("DATABASE_URL", dsn)  # the task's own connection reads it, as in a bench worker
    settings.MEDIA_ROOT = str(tmp_path)
    yield dsn
    job_floor._state.clear()  # its connection and provider child belong to this test
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {job_floor.TABLE}")


def statuses(dsn, ids):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT id, status FROM {job_floor.TABLE} WHERE id = ANY(%s) ORDER BY id", [ids])
        return [status for _, status in rows]


def test_a_floor_job_claims_its_row_stores_the_output_finishes_and_publishes(dsn, settings):
    ids = job_floor.prepare(dsn, 2)
    listener = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    listener.subscribe(job_floor.CHANNEL)
    listener.get_message(timeout=1)  # the subscription's confirmation

    job_floor.job_floor_task(ids[0])

    assert statuses(dsn, ids) == ["succeeded", "queued"]
    with default_storage.open(f"bench-job-floor/{ids[0]}.png") as stored:
        assert stored.read() == PIXEL_PNG  # the provider child's answer
    assert listener.get_message(timeout=5)["data"] == str(ids[0]).encode()
    listener.close()


def test_a_second_delivery_of_a_floor_job_does_nothing(dsn):
    (row_id,) = job_floor.prepare(dsn, 1)
    job_floor.job_floor_task(row_id)
    job_floor.job_floor_task(row_id)  # acks_late: a redelivery must not run the job twice

    assert statuses(dsn, [row_id]) == ["succeeded"]
    assert default_storage.listdir("bench-job-floor")[1] == [f"{row_id}.png"]
