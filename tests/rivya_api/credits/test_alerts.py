"""GET/PATCH /api/v1/credits/alerts and the credits.low event: set, judged, published once, signed.

The crossing is decided by rivya_billing (tests/rivya_billing/test_low_balance.py proves it
per crossing under 200 threads); these tests cover the public side: the endpoint, the
event-type catalog, and that each crossing becomes exactly one signed webhook event, also
with publishers running concurrently.
"""

from __future__ import annotations

import json

import pytest
from standardwebhooks import Webhook

from rivya_api.credits.events import credits_low_events_publish
from rivya_billing import services
from rivya_webhooks.models import WebhookEvent
from rivya_webhooks.registry import event_types
from rivya_webhooks.services import webhook_endpoint_create
from tests.openapi import assert_matches_openapi
from tests.rivya_billing.concurrency import run_concurrently
from tests.rivya_billing.conftest import thread_connections  # noqa: F401  (a fixture: one connection per thread)
from tests.rivya_webhooks.conftest import run_due
from tests.rivya_webhooks.receiver import Receiver
from tests.rivya_webhooks.support import FrozenClock

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/credits/alerts"


def error(response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code
    assert body["param"] == param
    return body


def low_events(account) -> list[dict]:
    return [
        json.loads(e.payload) for e in WebhookEvent.objects.filter(account=account, type="credits.low").order_by("pk")
    ]


def test_alerts_need_an_api_key(client):
    assert client.get(ALERTS).status_code == 401
    assert client.patch(ALERTS, {"low_balance_threshold": 5}, content_type="application/json").status_code == 401


def test_an_account_starts_without_an_alert(api_client):
    response = api_client.get(ALERTS)
    assert response.status_code == 200
    assert response.json() == {
        "object": "credits_alerts",
        "low_balance_threshold": None,
        "low_balance_triggered": False,
        "available": 0,
    }
    assert_matches_openapi(response, "get", ALERTS)


def test_set_then_spend_below_publishes_one_credits_low(api_client, account):
    services.credits_grant(account=account, amount=1000, reference="g")
    response = api_client.patch(ALERTS, {"low_balance_threshold": 500}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "object": "credits_alerts",
        "low_balance_threshold": 500,
        "low_balance_triggered": False,
        "available": 1000,
    }
    assert_matches_openapi(response, "patch", ALERTS)

    services.credits_reserve(account=account, amount=600, reference="task_a")
    services.credits_reserve(account=account, amount=100, reference="task_b")
    assert credits_low_events_publish() == 1
    assert credits_low_events_publish() == 0
    (event,) = low_events(account)
    assert event["type"] == "credits.low"
    assert event["data"] == {"object": "credits_alert", "available": 400, "threshold": 500}
    assert api_client.get(ALERTS).json()["low_balance_triggered"] is True

    services.credits_release(account=account, reference="task_a")  # 900: re-armed
    assert api_client.get(ALERTS).json()["low_balance_triggered"] is False
    services.credits_reserve(account=account, amount=450, reference="task_c")  # 450: crosses again
    assert credits_low_events_publish() == 1
    assert [e["data"]["available"] for e in low_events(account)] == [400, 450]


def test_a_threshold_above_available_publishes_at_once(api_client, account):
    services.credits_grant(account=account, amount=100, reference="g")
    body = api_client.patch(ALERTS, {"low_balance_threshold": 150}, format="json").json()
    assert body["low_balance_triggered"] is True
    # The same value again is a no-op; null turns it off.
    api_client.patch(ALERTS, {"low_balance_threshold": 150}, format="json")
    assert credits_low_events_publish() == 1
    off = api_client.patch(ALERTS, {"low_balance_threshold": None}, format="json").json()
    assert off["low_balance_threshold"] is None
    assert off["low_balance_triggered"] is False
    assert [e["data"] for e in low_events(account)] == [{"object": "credits_alert", "available": 100, "threshold": 150}]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"low_balance_threshold": 0}, "min_value"),
        ({"low_balance_threshold": -3}, "min_value"),
        ({"low_balance_threshold": "ten"}, "invalid_type"),
        ({"low_balance_threshold": 2**62 + 1}, "max_value"),
        ({"low_balance_threshold": 2**70}, "number_out_of_range"),
    ],
)
def test_a_bad_threshold_is_a_400_naming_it(api_client, body, code):
    response = api_client.patch(ALERTS, body, format="json")
    assert response.status_code == 400, response.content
    error(response, 400, code, "low_balance_threshold")
    assert_matches_openapi(response, "patch", ALERTS)


def test_a_patch_without_the_field_changes_nothing(api_client, account):
    services.credits_alert_set(account=account, low_balance_threshold=9)
    response = api_client.patch(ALERTS, {}, format="json")
    assert response.status_code == 200
    assert response.json()["low_balance_threshold"] == 9


def test_an_unknown_field_is_refused(api_client):
    response = api_client.patch(ALERTS, {"low_balance_threshold": 5, "threshold": 5}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "threshold"


def test_the_alert_is_the_accounts_own(api_client, make_account, make_api_client):
    other = make_account()
    other_client = make_api_client(other)
    other_client.patch(ALERTS, {"low_balance_threshold": 7}, format="json")
    assert api_client.get(ALERTS).json()["low_balance_threshold"] is None
    assert other_client.get(ALERTS).json()["low_balance_threshold"] == 7
    assert credits_low_events_publish() == 1
    assert WebhookEvent.objects.get(type="credits.low").account_id == other.pk


def test_credits_low_is_in_the_catalog_and_subscribable(api_client, settings, rivya_settings):
    assert "credits.low" in {item.name for item in event_types()}
    settings.DEBUG = True
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=True)
    response = api_client.post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:9/", "event_types": ["credits.low"]}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["event_types"] == ["credits.low"]


def test_credits_low_is_delivered_signed_to_a_subscribed_endpoint(account, settings, rivya_settings):
    settings.DEBUG = True
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=True)
    clock = FrozenClock()
    with Receiver() as receiver:
        _, secret = webhook_endpoint_create(account=account, url=receiver.url(), event_types=["credits.low"])
        _, other_secret = webhook_endpoint_create(
            account=account, url=receiver.url(), event_types=["generation.succeeded"]
        )
        services.credits_grant(account=account, amount=50, reference="g")
        services.credits_alert_set(account=account, low_balance_threshold=20)
        services.credits_reserve(account=account, amount=31, reference="t")
        assert credits_low_events_publish() == 1
        clock.now = WebhookEvent.objects.get().created_at
        assert run_due(clock) == 1  # only the endpoint subscribed to credits.low
        (request,) = receiver.requests
    body = Webhook(secret).verify(request.body, request.headers)
    assert body["type"] == "credits.low"
    assert body["data"] == {"object": "credits_alert", "available": 19, "threshold": 20}
    assert other_secret


@pytest.mark.postgres
@pytest.mark.usefixtures("thread_connections")
def test_concurrent_spending_and_publishers_give_one_event_per_crossing(make_account):
    """100 threads spend and return credits around the threshold while 4 threads publish:
    each crossing the ledger recorded is exactly one credits.low event."""
    from rivya_billing.models import LowBalanceNotice

    account = make_account()
    services.credits_grant(account=account, amount=300, reference="g")
    services.credits_alert_set(account=account, low_balance_threshold=200)

    def work(i: int) -> int:
        if i % 25 == 0:
            return credits_low_events_publish()
        try:
            services.credits_reserve(account=account, amount=40 + i % 30, reference=f"t{i}")
        except Exception:
            return 0
        if i % 2:
            services.credits_release(account=account, reference=f"t{i}")
        return 0

    run = run_concurrently(100, work)
    assert run.unexpected() == []
    credits_low_events_publish()
    notices = list(LowBalanceNotice.objects.filter(wallet__account=account).order_by("pk"))
    events = low_events(account)
    assert len(notices) >= 1
    # One event per notice. Concurrent publishers may publish two crossings of one account out of
    # order (one skips the notice another holds), as webhooks never promise an order: compare as sets.
    assert sorted(e["data"]["available"] for e in events) == sorted(n.available for n in notices)
    assert len({e["id"] for e in events}) == len(events) == len(notices)
    assert all(n.published_at is not None for n in LowBalanceNotice.objects.filter(wallet__account=account))


PUBLISHER = "rivya_api.credits_low_events_publish"


def test_the_publisher_is_on_the_beat_schedule():
    from django.conf import settings

    import rivya_api.tasks  # noqa: F401  (what Celery's autodiscovery imports)
    from config.celery import app

    entries = [entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == PUBLISHER]
    assert len(entries) == 1
    assert 1 <= entries[0]["schedule"] <= 10
    assert PUBLISHER in app.tasks


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_process_executor")
def test_without_a_broker_the_web_process_publishes_credits_low(make_account):
    """The in-process runner, on the real schedule entry with a short interval, turns a crossing into the event."""
    import threading
    import time
    from datetime import timedelta

    from django.conf import settings

    from config.celery import app
    from rivya_api.background import start_periodic_runner

    account = make_account()
    services.credits_grant(account=account, amount=10, reference="g")
    services.credits_alert_set(account=account, low_balance_threshold=5)
    services.credits_reserve(account=account, amount=6, reference="t")
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == PUBLISHER)
    previous = app.conf.beat_schedule
    app.conf.beat_schedule = {"publish": {**entry, "schedule": timedelta(seconds=1)}}
    stop = threading.Event()
    try:
        start_periodic_runner(app, stop)
        deadline = time.monotonic() + 15
        while not low_events(account) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        app.conf.beat_schedule = previous
    assert [e["data"]["available"] for e in low_events(account)] == [4]
