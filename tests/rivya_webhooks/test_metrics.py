"""Webhook metrics: every attempt by outcome, and deliveries when they reach a final state."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import webhook_event_publish
from tests.rivya_webhooks.conftest import run_due

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_targets")]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(autouse=True)
def _types():
    event_type_register("thing.created", "test")
    yield
    event_type_unregister("thing.created")


def test_success_counts_one_attempt_and_one_delivery_with_its_delay(account, receiver, clock, make_endpoint):
    make_endpoint(receiver.url(), ["*"])
    before = {
        "attempts": value("rivya_webhook_attempts_total", outcome="success"),
        "delivered": value("rivya_webhook_deliveries_total", outcome="succeeded"),
        "delays": value("rivya_webhook_delivery_delay_seconds_count"),
        "fast": value("rivya_webhook_delivery_delay_seconds_bucket", le="2.5"),
    }
    webhook_event_publish(account=account, type="thing.created", data={}, clock=clock)
    clock.advance(seconds=3)
    assert run_due(clock) == 1
    assert value("rivya_webhook_attempts_total", outcome="success") == before["attempts"] + 1
    assert value("rivya_webhook_deliveries_total", outcome="succeeded") == before["delivered"] + 1
    assert value("rivya_webhook_delivery_delay_seconds_count") == before["delays"] + 1
    # Published at t, delivered at t+3 s on the injected clock.
    assert value("rivya_webhook_delivery_delay_seconds_bucket", le="2.5") == before["fast"]
    assert value("rivya_webhook_delivery_delay_seconds_bucket", le="5.0") > 0


def test_failures_count_attempts_by_error_and_the_delivery_once_when_retries_run_out(
    account, receiver, clock, make_endpoint, rivya_settings
):
    rivya_settings("RIVYA_WEBHOOKS", RETRY_SCHEDULE=[5])
    receiver.reply(status=500, body=b"boom")
    make_endpoint(receiver.url(), ["*"])
    before_attempts = value("rivya_webhook_attempts_total", outcome="http_status")
    before_failed = value("rivya_webhook_deliveries_total", outcome="failed")
    webhook_event_publish(account=account, type="thing.created", data={}, clock=clock)
    assert run_due(clock) == 1
    assert value("rivya_webhook_deliveries_total", outcome="failed") == before_failed  # a retry is scheduled
    clock.advance(seconds=10)
    assert run_due(clock) == 1
    assert value("rivya_webhook_attempts_total", outcome="http_status") == before_attempts + 2
    assert value("rivya_webhook_deliveries_total", outcome="failed") == before_failed + 1
