"""Background delivery for real: a Celery worker on Redis, and the in-process executor.

The worker is ``celery -A config worker`` in a subprocess with this run's
REDIS_URL and test database, consuming the queues a plain worker consumes.
Nothing here sets ``task_always_eager``.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from rivya_webhooks.models import WebhookDelivery
from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import webhook_deliveries_sweep, webhook_event_publish
from tests.rivya_webhooks.receiver import Reply
from tests.rivya_webhooks.support import FrozenClock
from tests.workers import CeleryWorker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_targets")]


@pytest.fixture(autouse=True)
def _types():
    event_type_register("thing.created", "test")
    yield
    event_type_unregister("thing.created")


def _publish(account, count):
    with transaction.atomic():
        return [webhook_event_publish(account=account, type="thing.created", data={"n": n}) for n in range(count)]


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.redis
def test_worker_delivers_signed_events_and_retries_a_failure(account, receiver, make_endpoint, redis_queue):
    seen = []

    def behaviour(request):
        seen.append(request)
        return Reply(status=500 if len(seen) == 1 else 200)

    receiver.behaviour = behaviour
    _, secret = make_endpoint(receiver.url(), ["*"])
    with CeleryWorker():
        events = _publish(account, 2)
        # Two first attempts, one of which fails and comes back after ~5 s (a countdown).
        requests = receiver.wait_for(3, timeout=30)
        assert _wait(lambda: WebhookDelivery.objects.filter(state="succeeded").count() == 2)
    assert len(requests) == 3
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
    ids = [r.headers["webhook-id"] for r in requests]
    assert sorted(set(ids)) == sorted(e.public_id for e in events)
    assert ids.count(requests[0].headers["webhook-id"]) == 2  # the retry carried the same id
    failed_then_ok = WebhookDelivery.objects.get(event__public_id=requests[0].headers["webhook-id"])
    assert [a.status_code for a in failed_then_ok.attempts.order_by("created_at")] == [500, 200]
    assert all(a.task_id for a in failed_then_ok.attempts.all())


@pytest.mark.redis
def test_broker_purged_after_commit_the_sweeper_still_delivers_everything(
    account, make_account, receiver, make_endpoint, redis_queue
):
    secrets = {}
    for name in ("a", "b"):
        endpoint, secrets[f"/{name}"] = make_endpoint(receiver.url(f"/{name}"), ["*"])
    events = _publish(account, 25)
    assert redis_queue.llen("celery") == 2  # queued on commit (one batch of 25 per endpoint)...

    from config.celery import app

    app.control.purge()  # ...and lost, as in a Redis restart without persistence
    assert redis_queue.llen("celery") == 0

    with CeleryWorker():
        time.sleep(1.0)
        assert receiver.requests == []  # nothing left in the broker to deliver
        # The sweeper (beat's job) runs when the lost messages are overdue.
        clock = FrozenClock(timezone.now() + timedelta(minutes=6))
        assert webhook_deliveries_sweep(clock=clock) == 50
        requests = receiver.wait_for(50, timeout=60)
        assert _wait(lambda: WebhookDelivery.objects.filter(state="succeeded").count() == 50)
        time.sleep(0.5)
        requests = receiver.requests

    assert len(requests) == 50
    pairs = {(r.headers["webhook-id"], r.path) for r in requests}
    assert pairs == {(e.public_id, path) for e in events for path in ("/a", "/b")}
    for request in requests:
        Webhook(secrets[request.path]).verify(request.body, request.headers)


@pytest.fixture
def in_process_executor():
    """Force the broker-less mode even when this run has REDIS_URL."""
    from config.celery import app

    previous = app.conf.get("rivya_in_process")
    app.conf.rivya_in_process = True
    yield
    app.conf.rivya_in_process = previous


@pytest.mark.usefixtures("in_process_executor")
def test_in_process_executor_delivers_without_a_broker(account, receiver, make_endpoint):
    _, secret = make_endpoint(receiver.url(), ["*"])
    (event,) = _publish(account, 1)
    (request,) = receiver.wait_for(1, timeout=10)
    assert Webhook(secret).verify(request.body, request.headers)["id"] == event.public_id
    assert _wait(lambda: WebhookDelivery.objects.get().state == "succeeded", timeout=10)


def test_sweeps_are_on_the_beat_schedule_for_beat_and_the_in_process_runner():
    from config.celery import app

    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"rivya_webhooks.sweep", "rivya_webhooks.cleanup"} <= scheduled
    app.loader.import_default_modules()
    assert {"rivya_webhooks.sweep", "rivya_webhooks.cleanup", "rivya_webhooks.deliver"} <= set(app.tasks)
    # Routed to Celery's default queue, which a plain `celery -A config worker` consumes, unless
    # CELERY_WEBHOOKS_QUEUE gives deliveries a queue of their own (tests/test_celery_routes.py).
    routes = app.conf.task_routes or {}
    assert {route["queue"] for route in routes.values()} <= {app.conf.task_default_queue}
