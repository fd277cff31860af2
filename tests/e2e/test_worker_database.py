"""A prefork Celery worker keeps its PostgreSQL connections across tasks and survives their loss.

Celery's Django fixup would close Django's whole psycopg pool after every task under
prefork (a new connection per task); ``CELERY_DB_REUSE_MAX`` plus the per-task
hand-back in ``config/celery.py`` keep the pool, and the pool's health check
replaces connections a database restart broke. (With ``CELERY_DB_REUSE_MAX=0`` in the
environment, Celery's default, the worker holds no connection between tasks and this fails.)
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from rivya_billing.services import credits_grant
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.workers import CeleryWorker

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}}),
]


@pytest.fixture
def redis_purged():
    from config.celery import app

    app.control.purge()
    yield
    app.control.purge()


def other_backends() -> set[int]:
    """PostgreSQL backends on this test database other than this test's own connection."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in cursor.fetchall()}


def run_one(client) -> None:
    created = client.post("/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}}, format="json")
    assert created.status_code == 202, created.content
    deadline = time.monotonic() + 60
    while True:
        body = client.get(f"/api/v1/generations/{created.json()['id']}").json()
        if body["status"] in ("succeeded", "failed", "canceled"):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    assert body["status"] == "succeeded", body


def test_worker_reuses_its_connections_and_recovers_when_they_are_killed(api_client, account, redis_purged):
    credits_grant(account=account, amount=100, reference="grant")
    # This test process's own pooled connections are not the worker's: never count or kill them.
    ours = other_backends()
    with CeleryWorker(concurrency=1, extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}):
        run_one(api_client)
        time.sleep(0.5)  # let the task's connections go back to the pool
        first = other_backends() - ours
        assert first, "the worker holds no pooled connection between tasks"
        for _ in range(3):
            run_one(api_client)
        time.sleep(0.5)
        assert other_backends() - ours == first, "the worker opened new connections for later tasks"

        # As a database restart would: every worker connection dies while idle in the pool.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [sorted(first)])
        run_one(api_client)
        run_one(api_client)
