"""The hold sweeper runs in the background: on Celery beat with a broker, in-process without one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.celery import app
from rivya_api.background import start_periodic_runner
from rivya_billing import services
from rivya_billing.models import Hold
from rivya_billing.tasks import credits_expire_lapsed_holds as credits_expire_lapsed_holds_task

SWEEPER = "rivya_billing.tasks.credits_expire_lapsed_holds"
ROOT = Path(__file__).resolve().parents[2]


def lapsed_hold(account) -> Hold:
    """A hold whose lease lapsed a minute ago by the real clock (the sweeper's default)."""
    services.credits_grant(account=account, amount=10, reference="grant:1")
    return services.credits_reserve(
        account=account, amount=7, reference="task_dead", lease_seconds=60, now=timezone.now() - timedelta(minutes=2)
    )


def wait_for_state(hold: Hold, state: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    current = Hold.objects.get(pk=hold.pk).state
    while current != state and time.monotonic() < deadline:
        time.sleep(0.2)
        current = Hold.objects.get(pk=hold.pk).state
    return current


def test_the_sweeper_is_on_the_beat_schedule():
    entries = [entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == SWEEPER]
    assert len(entries) == 1
    assert timedelta(seconds=10) <= entries[0]["schedule"] <= timedelta(minutes=5)
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE
    assert SWEEPER in app.tasks


@pytest.fixture
def in_process_executor():
    """The broker-less mode, even when this run has REDIS_URL."""
    previous = app.conf.get("rivya_in_process")
    app.conf.rivya_in_process = True
    yield
    app.conf.rivya_in_process = previous


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_process_executor")
def test_without_a_broker_the_web_process_runs_the_sweeper(account):
    hold = lapsed_hold(account)
    # The runner as the ASGI app starts it, on the real schedule entry with a short interval.
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == SWEEPER)
    previous = app.conf.beat_schedule
    app.conf.beat_schedule = {"sweep": {**entry, "schedule": timedelta(seconds=1)}}
    stop = threading.Event()
    try:
        start_periodic_runner(app, stop)
        assert wait_for_state(hold, "expired", 15) == "expired"
    finally:
        stop.set()
        app.conf.beat_schedule = previous
    assert Hold.objects.get(pk=hold.pk).resolved_at is not None


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def celery_worker(transactional_db):
    """A real ``celery -A config worker`` on this run's REDIS_URL and test database; killed after."""
    env = {**os.environ, "DATABASE_URL": _database_url(), "RIVYA_IN_PROCESS_BEAT": "false"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "solo", "--without-gossip", "--without-mingle"]
        + ["--without-heartbeat", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)


@pytest.mark.redis
def test_a_celery_worker_runs_the_sweeper_from_the_broker(celery_worker, make_account):
    assert not app.conf.get("rivya_in_process"), "REDIS_URL is set, so tasks must go to the broker"
    hold = lapsed_hold(make_account())
    credits_expire_lapsed_holds_task.delay()
    state = wait_for_state(hold, "expired", 60)
    if state != "expired":
        celery_worker.terminate()
        output = celery_worker.communicate(timeout=15)[0].decode(errors="replace")
        pytest.fail(f"the worker did not expire the hold (state {state}); worker output:\n{output[-3000:]}")
