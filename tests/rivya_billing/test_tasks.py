"""The hold sweeper runs in the background: on Celery beat with a broker, in-process without one."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from config.celery import app
from rivya_api.background import start_periodic_runner
from rivya_billing import services
from rivya_billing.models import Hold
from rivya_billing.tasks import credits_expire_lapsed_holds as credits_expire_lapsed_holds_task
from tests.workers import CeleryWorker

SWEEPER = "rivya_billing.tasks.credits_expire_lapsed_holds"


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


@pytest.fixture
def celery_worker(transactional_db):
    """A real ``celery -A config worker`` on this run's REDIS_URL and test database."""
    with CeleryWorker(concurrency=1) as worker:
        yield worker


@pytest.mark.redis
def test_a_celery_worker_runs_the_sweeper_from_the_broker(celery_worker, make_account):
    assert not app.conf.get("rivya_in_process"), "REDIS_URL is set, so tasks must go to the broker"
    hold = lapsed_hold(make_account())
    credits_expire_lapsed_holds_task.delay()
    state = wait_for_state(hold, "expired", 60)
    if state != "expired":
        log = celery_worker.log.read_text()[-3000:]
        pytest.fail(f"the worker did not expire the hold (state {state}); its log:\n{log}")


GRANT_SWEEPER = "rivya_billing.tasks.credits_expire_grants"


def test_the_grant_expiry_sweep_is_on_the_beat_schedule():
    entries = [entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == GRANT_SWEEPER]
    assert len(entries) == 1
    assert timedelta(seconds=10) <= entries[0]["schedule"] <= timedelta(minutes=5)
    assert GRANT_SWEEPER in app.tasks


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_process_executor")
def test_without_a_broker_the_web_process_expires_due_grants(account):
    from rivya_billing.models import CreditGrant

    past = timezone.now() - timedelta(days=2)
    services.credits_grant(account=account, amount=10, reference="promo", expires_at=past + timedelta(days=1), now=past)
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == GRANT_SWEEPER)
    previous = app.conf.beat_schedule
    app.conf.beat_schedule = {"sweep": {**entry, "schedule": timedelta(seconds=1)}}
    stop = threading.Event()
    try:
        start_periodic_runner(app, stop)
        deadline = time.monotonic() + 15
        while CreditGrant.objects.get(reference="promo").expired != 10 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        app.conf.beat_schedule = previous
    assert CreditGrant.objects.get(reference="promo").expired == 10
    assert services.credits_grant(account=account, amount=1, reference="g2").balance_after == 1
