"""Delivery to a real local receiver: signatures, retries, status handling, auto-disable, SSRF.

These run in this process with a frozen, injected clock and call the same
services a worker calls (``run_due`` is the sweeper plus a worker). Nothing
is queued: under the ``db`` fixture no transaction commits, so on-commit
messages never leave.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.db import connection
from standardwebhooks import Webhook, WebhookVerificationError

from rivya_webhooks.exceptions import BlockedDestinationError, InvalidWebhookURLError
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, WebhookEvent
from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import (
    webhook_delivery_attempt,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
    webhook_event_publish,
    webhook_event_redeliver,
)
from tests.rivya_webhooks.conftest import run_due
from tests.rivya_webhooks.receiver import Receiver, Reply
from tests.rivya_webhooks.support import PUBLIC_IP, FrozenClock, StaticResolver
from tests.services import has_redis

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_targets")]

SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


@pytest.fixture(autouse=True)
def _types():
    event_type_register("thing.created", "test")
    yield
    event_type_unregister("thing.created")


def publish(account, clock, **data):
    return webhook_event_publish(account=account, type="thing.created", data=data, clock=clock)


def verify(secret: str, request) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


def drive(clock: FrozenClock, *, until: timedelta, rng=None) -> None:
    """Jump the clock from due time to due time, sending what is due, for ``until``."""
    end = clock() + until
    run_due(clock, rng=rng)
    while True:
        nxt = (
            WebhookDelivery.objects.filter(state="pending", endpoint__enabled=True)
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        if nxt is None or nxt > end:
            clock.now = end
            return
        clock.now = max(clock.now, nxt)
        run_due(clock, rng=rng)


def test_every_request_verifies_before_during_and_after_rotation(account, receiver, clock, make_endpoint):
    endpoint, first = make_endpoint(receiver.url(), ["*"], clock=clock)

    before = publish(account, clock, step="before")
    assert run_due(clock) == 1
    (request,) = receiver.requests
    assert verify(first, request)["id"] == before.public_id
    assert len(request.headers["webhook-signature"].split(" ")) == 1

    endpoint, second = webhook_endpoint_rotate_secret(endpoint=endpoint, clock=clock)
    during = publish(account, clock, step="during")
    clock.advance(hours=23)
    run_due(clock)
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(first, request)["id"] == during.public_id  # receivers not yet switched
    assert verify(second, request)["id"] == during.public_id  # receivers already switched

    clock.advance(hours=1, seconds=1)
    after = publish(account, clock, step="after")
    run_due(clock)
    request = receiver.requests[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verify(second, request)["id"] == after.public_id
    with pytest.raises(WebhookVerificationError):
        verify(first, request)

    for request, event in zip(receiver.requests, (before, during, after), strict=True):
        # The bytes on the wire are the stored envelope, byte for byte, with its length.
        assert request.body == event.payload.encode("utf-8")
        assert request.content_length == len(request.body)
        assert request.headers["webhook-id"] == event.public_id
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("Rivya-Webhooks/")
    assert WebhookDelivery.objects.filter(state="succeeded").count() == 3


def test_non_ascii_payload_is_signed_as_utf8(account, receiver, clock, make_endpoint):
    _, secret = make_endpoint(receiver.url(), ["*"])
    publish(account, clock, prompt="नदी के किनारे एक घर", emoji="🌊")
    run_due(clock)
    assert verify(secret, receiver.requests[0])["data"]["emoji"] == "🌊"


def test_retry_schedule_with_jitter_then_gives_up(account, receiver, clock, make_endpoint):
    receiver.reply(status=500, body=b"boom")
    make_endpoint(receiver.url(), ["*"])
    event = publish(account, clock)
    rng = random.Random(7)
    for step, base in enumerate(SCHEDULE, start=1):
        run_due(clock, rng=rng)
        delivery = WebhookDelivery.objects.get(event=event)
        attempt = delivery.attempts.order_by("-created_at", "-pk").first()
        wait = (delivery.next_attempt_at - clock()).total_seconds()
        assert 0.8 * base <= wait <= 1.2 * base, (step, wait)
        assert attempt.next_attempt_at == delivery.next_attempt_at
        clock.advance(seconds=wait - 0.001)
        assert run_due(clock) == 0  # not a moment early
        clock.advance(seconds=0.001)
    run_due(clock, rng=rng)
    delivery = WebhookDelivery.objects.get(event=event)
    assert delivery.state == "failed"
    assert delivery.next_attempt_at is None
    assert delivery.attempts_count == 10
    assert len(receiver.requests) == 10
    clock.advance(days=30)
    assert run_due(clock) == 0
    total = sum(SCHEDULE)
    first, last = delivery.attempts.order_by("created_at").first(), delivery.attempts.order_by("created_at").last()
    assert 0.8 * total <= (last.created_at - first.created_at).total_seconds() <= 1.2 * total


def test_receiver_down_through_the_schedule_then_back(account, clock, make_endpoint):
    """Down for every attempt but the last: each (event, endpoint) ends with exactly one
    success, and every duplicate the receiver saw carries the event's webhook-id."""
    start = clock()
    back_at = start + timedelta(seconds=sum(SCHEDULE[:-1]) * 1.2 + 60)

    def behaviour(request):
        return Reply(status=200) if clock() >= back_at else Reply(status=503, body=b"down")

    with Receiver(behaviour) as receiver:
        endpoints = [make_endpoint(receiver.url(f"/{name}"), ["*"])[0] for name in ("a", "b")]
        events = [publish(account, clock, n=n) for n in range(3)]
        drive(clock, until=timedelta(days=4), rng=random.Random(3))
        requests = receiver.requests

    by_pair: dict[tuple[str, str], list] = {}
    for request in requests:
        by_pair.setdefault((request.headers["webhook-id"], request.path), []).append(request)
    assert set(by_pair) == {(e.public_id, f"/{n}") for e in events for n in ("a", "b")}
    for (event_id, path), seen in by_pair.items():
        assert len(seen) == 10, (event_id, path)
        assert {r.headers["webhook-id"] for r in seen} == {event_id}
        assert {r.body for r in seen} == {WebhookEvent.objects.get(public_id=event_id).payload.encode()}
    for endpoint in endpoints:
        for event in events:
            delivery = WebhookDelivery.objects.get(event=event, endpoint=endpoint)
            assert delivery.state == "succeeded"
            assert [a.status_code for a in delivery.attempts.order_by("created_at")] == [503] * 9 + [200]
        endpoint.refresh_from_db()
        assert endpoint.enabled
        assert endpoint.failing_since is None  # the success reset the failure clock


def test_receiver_down_for_the_whole_schedule_then_redelivered(account, clock, make_endpoint):
    with Receiver() as receiver:
        receiver.reply(status=502)
        endpoint, secret = make_endpoint(receiver.url(), ["*"])
        event = publish(account, clock)
        drive(clock, until=timedelta(days=4))
        assert WebhookDelivery.objects.get().state == "failed"
        receiver.reply(status=204)
        webhook_event_redeliver(event=event, clock=clock)
        drive(clock, until=timedelta(days=4))
        requests = receiver.requests
    assert len(requests) == 11
    assert {r.headers["webhook-id"] for r in requests} == {event.public_id}
    verify(secret, requests[-1])
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "succeeded"
    triggers = list(delivery.attempts.order_by("created_at").values_list("trigger", flat=True))
    assert triggers == ["scheduled"] * 10 + ["manual"]


def test_a_success_that_timed_out_is_sent_again_with_the_same_id(account, clock, make_endpoint, rivya_settings):
    rivya_settings("RIVYA_WEBHOOKS", TIMEOUT=0.3)
    calls = []

    def behaviour(request):
        calls.append(request)
        return Reply(status=200, delay=1.0 if len(calls) == 1 else 0)

    with Receiver(behaviour) as receiver:
        _, secret = make_endpoint(receiver.url(), ["*"])
        event = publish(account, clock)
        run_due(clock)
        attempt = WebhookDeliveryAttempt.objects.get()
        assert (attempt.error, attempt.status_code) == ("timeout", 0)
        assert attempt.latency_ms >= 250
        clock.advance(seconds=6)
        run_due(clock)
        requests = receiver.requests
    assert len(requests) == 2
    assert [r.headers["webhook-id"] for r in requests] == [event.public_id] * 2
    for request in requests:
        verify(secret, request)
    assert WebhookDelivery.objects.get().state == "succeeded"


def test_redirect_is_a_failure_naming_the_location(account, clock, make_endpoint):
    with Receiver() as target, Receiver() as receiver:
        receiver.reply(status=307, headers={"Location": target.url("/elsewhere")}, body=b"moved")
        make_endpoint(receiver.url(), ["*"])
        publish(account, clock)
        run_due(clock)
        assert target.requests == []
    attempt = WebhookDeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (307, "redirect")
    assert attempt.location == target.url("/elsewhere")
    assert target.url("/elsewhere") in attempt.error_message
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "pending"
    assert delivery.retry_count == 1


def test_410_disables_the_endpoint_and_records_an_event(account, clock, make_endpoint):
    with Receiver() as gone, Receiver() as watcher:
        gone.reply(status=410, body=b"gone")
        endpoint, _ = make_endpoint(gone.url(), ["thing.created"])
        watcher_endpoint, watcher_secret = make_endpoint(watcher.url(), ["webhook_endpoint.disabled"])
        publish(account, clock, n=1)
        second = publish(account, clock, n=2)
        WebhookDelivery.objects.filter(event=second).update(next_attempt_at=clock() + timedelta(hours=1))
        run_due(clock)
        endpoint.refresh_from_db()
        assert not endpoint.enabled
        assert endpoint.disabled_reason == "gone"
        assert len(gone.requests) == 1
        # Its other deliveries wait rather than being sent to a dead URL.
        clock.advance(days=1)
        run_due(clock)
        assert len(gone.requests) == 1
        assert WebhookDelivery.objects.get(event=second).state == "pending"
        (notice,) = watcher.requests
    body = verify(watcher_secret, notice)
    assert body["type"] == "webhook_endpoint.disabled"
    assert body["data"]["endpoint_id"] == endpoint.public_id
    assert body["data"]["reason"] == "gone"
    assert WebhookEvent.objects.filter(type="webhook_endpoint.disabled").count() == 1


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(account, clock, make_endpoint, status):
    with Receiver() as receiver:
        receiver.reply(status=status, headers={"Retry-After": "120"})
        make_endpoint(receiver.url(), ["*"])
        publish(account, clock)
        run_due(clock)
        delivery = WebhookDelivery.objects.get()
        assert delivery.next_attempt_at - clock() == timedelta(seconds=120)
        clock.advance(seconds=119)
        assert run_due(clock) == 0
        # An HTTP date works too; a Retry-After shorter than the schedule does not shorten it.
        when = clock() + timedelta(hours=3)
        receiver.reply(status=status, headers={"Retry-After": format_datetime(when, usegmt=True)})
        clock.advance(seconds=1)
        run_due(clock)
        delivery.refresh_from_db()
        assert abs((delivery.next_attempt_at - when).total_seconds()) < 1
        receiver.reply(status=status, headers={"Retry-After": "1"})
        clock.now = delivery.next_attempt_at
        run_due(clock)
        delivery.refresh_from_db()
        assert 0.8 * 1800 <= (delivery.next_attempt_at - clock()).total_seconds() <= 1.2 * 1800


def test_a_slow_receiver_times_out(account, clock, make_endpoint, rivya_settings):
    rivya_settings("RIVYA_WEBHOOKS", TIMEOUT=0.3)
    with Receiver() as receiver:
        receiver.reply(status=200, delay=2.0)
        make_endpoint(receiver.url(), ["*"])
        publish(account, clock)
        run_due(clock)
    attempt = WebhookDeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (0, "timeout")
    assert 250 <= attempt.latency_ms < 2000
    assert WebhookDelivery.objects.get().state == "pending"


def test_connection_refused_is_recorded(account, clock, make_endpoint):
    with Receiver() as receiver:
        url = receiver.url()
    make_endpoint(url, ["*"])  # nobody listens there any more
    publish(account, clock)
    run_due(clock)
    attempt = WebhookDeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (0, "connect")


def test_response_body_is_kept_up_to_20_kb(account, clock, make_endpoint):
    with Receiver() as receiver:
        receiver.reply(status=500, body=b"x" * 50_000)
        make_endpoint(receiver.url(), ["*"])
        publish(account, clock)
        run_due(clock)
    attempt = WebhookDeliveryAttempt.objects.get()
    assert len(attempt.response_body) == 20 * 1024
    assert attempt.response_truncated


def test_five_days_of_failure_disable_the_endpoint(account, clock, make_endpoint):
    with Receiver() as failing, Receiver() as watcher:
        failing.reply(status=500)
        endpoint, _ = make_endpoint(failing.url(), ["thing.created"])
        make_endpoint(watcher.url(), ["webhook_endpoint.disabled"])
        start = clock()
        # One event a day keeps attempts going past any single event's ~3-day schedule.
        for _ in range(6):
            publish(account, clock)
            drive(clock, until=timedelta(days=1))
            endpoint.refresh_from_db()
            if not endpoint.enabled:
                break
        assert not endpoint.enabled
        assert endpoint.disabled_reason == "failing"
        assert endpoint.failing_since == start
        assert timedelta(days=5) <= endpoint.disabled_at - start < timedelta(days=5, hours=6)
        (notice,) = watcher.requests
    assert json.loads(notice.body)["data"]["reason"] == "failing"


def test_a_success_resets_the_failure_clock(account, clock, make_endpoint):
    with Receiver() as receiver:
        receiver.reply(status=500)
        endpoint, _ = make_endpoint(receiver.url(), ["thing.created"])
        publish(account, clock)
        drive(clock, until=timedelta(days=3))
        endpoint.refresh_from_db()
        assert endpoint.failing_since is not None
        receiver.reply(status=200)
        publish(account, clock)
        run_due(clock)
        endpoint.refresh_from_db()
        assert endpoint.failing_since is None
        receiver.reply(status=500)
        for _ in range(3):
            publish(account, clock)
            drive(clock, until=timedelta(days=1))
        endpoint.refresh_from_db()
        assert endpoint.enabled  # three days since the success, not six since the first failure


def test_manual_redeliver_after_success_sends_the_same_event_again(account, receiver, clock, make_endpoint):
    _, secret = make_endpoint(receiver.url(), ["*"])
    event = publish(account, clock)
    run_due(clock)
    clock.advance(days=2)
    webhook_event_redeliver(event=event, clock=clock)
    run_due(clock)
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event.public_id
    assert first.body == second.body
    verify(secret, second)
    assert list(WebhookDeliveryAttempt.objects.order_by("created_at").values_list("trigger", flat=True)) == [
        "scheduled",
        "manual",
    ]


def test_a_claimed_delivery_is_not_sent_twice(account, receiver, clock, make_endpoint):
    make_endpoint(receiver.url(), ["*"])
    publish(account, clock)
    delivery = WebhookDelivery.objects.get()
    assert webhook_delivery_attempt(delivery_id=delivery.pk, clock=clock) is not None
    assert webhook_delivery_attempt(delivery_id=delivery.pk, clock=clock) is None
    assert len(receiver.requests) == 1


def test_disabled_endpoints_get_nothing(account, receiver, clock, make_endpoint):
    endpoint, _ = make_endpoint(receiver.url(), ["*"])
    publish(account, clock)
    webhook_endpoint_update(endpoint=endpoint, enabled=False)
    assert run_due(clock) == 0
    assert webhook_delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk, clock=clock) is None
    assert receiver.requests == []


# --- SSRF -----------------------------------------------------------------------------

SSRF_URLS = [
    "http://127.0.0.1/x",
    "http://127.0.0.2:8080/x",
    "http://2130706433/x",
    "http://0x7f.0.0.1/x",
    "http://017700000001/x",
    "http://[::1]/x",
    "http://[::]/x",
    "http://0.0.0.0/x",
    "http://10.1.2.3/x",
    "http://172.20.0.1/x",
    "http://192.168.0.1/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.100.100.100/x",
    "http://[fc00::1]/x",
    "http://[fd00:ec2::254]/x",
    "http://[fe80::1]/x",
    "http://224.0.0.251/x",
    "http://[ff02::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:a9fe:a9fe]/x",
    "http://[::127.0.0.1]/x",
    "http://[64:ff9b::7f00:1]/x",
    "http://localhost/x",
    "http://intranet.example.com/x",
]


@pytest.mark.parametrize("url", SSRF_URLS)
def test_each_ssrf_form_is_refused_at_creation(account, url, rivya_settings):
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=False, ALLOW_LOOPBACK_IN_DEBUG=False)
    resolver = StaticResolver({"localhost": ["127.0.0.1", "::1"], "intranet.example.com": ["172.16.5.4"]})
    with pytest.raises(BlockedDestinationError):
        webhook_endpoint_create(account=account, url=url, event_types=["*"], resolver=resolver)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url", ["gopher://hooks.example.com/", "https://admin:pw@hooks.example.com/", "file:///etc/passwd"]
)
def test_schemes_and_credentials_are_refused_at_creation(account, url):
    with pytest.raises(InvalidWebhookURLError):
        webhook_endpoint_create(account=account, url=url, event_types=["*"], resolver=StaticResolver())


def test_name_rebound_to_loopback_is_refused_at_delivery(account, receiver, clock, rivya_settings):
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=False, ALLOW_LOOPBACK_IN_DEBUG=False)
    resolver = StaticResolver({"hooks.example.com": [PUBLIC_IP]})
    url = f"http://hooks.example.com:{receiver.port}/hook"
    webhook_endpoint_create(account=account, url=url, event_types=["*"], resolver=resolver)
    publish(account, clock)
    resolver.table["hooks.example.com"] = ["127.0.0.1"]  # DNS rebinding
    run_due(clock, resolver=resolver)
    assert receiver.requests == []
    attempt = WebhookDeliveryAttempt.objects.get()
    assert (attempt.status_code, attempt.error) == (0, "blocked_destination")
    assert "127.0.0.1" in attempt.error_message
    assert WebhookDelivery.objects.get().state == "pending"  # retried: DNS may be fixed


def test_http_endpoint_is_refused_at_delivery_once_debug_is_off(account, receiver, clock, make_endpoint, settings):
    make_endpoint(receiver.url(), ["*"])
    publish(account, clock)
    settings.DEBUG = False
    run_due(clock)
    assert receiver.requests == []
    assert WebhookDeliveryAttempt.objects.get().error == "invalid_url"


# --- Concurrency (PostgreSQL) ------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_send_a_due_delivery_once(account, receiver, make_endpoint):
    make_endpoint(receiver.url(), ["*"])
    # The commit also queues the delivery (in-process executor, or Redis with nobody
    # consuming): that is one more competitor, which is fine.
    webhook_event_publish(account=account, type="thing.created", data={})
    delivery_id = WebhookDelivery.objects.get().pk
    workers = 8
    barrier = threading.Barrier(workers)
    results: list[object] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(webhook_delivery_attempt(delivery_id=delivery_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    receiver.wait_for(1, timeout=5)
    assert len([r for r in results if r is not None]) <= 1
    assert len(receiver.requests) == 1
    assert WebhookDeliveryAttempt.objects.count() == 1
    assert WebhookDelivery.objects.get().state == "succeeded"
    if has_redis():
        from config.celery import app

        app.control.purge()
