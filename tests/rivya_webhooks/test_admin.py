"""Django admin of rivya_webhooks: every page renders, secrets never show, redeliver works."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from rivya_webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import webhook_event_publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(admin)
    return client


@pytest.fixture
def published(account, make_endpoint, rivya_settings, resolver):
    event_type_register("thing.created", "test")
    rivya_settings("RIVYA_WEBHOOKS", RESOLVER=resolver)
    endpoint, secret = make_endpoint("https://hooks.example.com/x", ["*"])
    event = webhook_event_publish(account=account, type="thing.created", data={"n": 1})
    yield endpoint, secret, event
    event_type_unregister("thing.created")


def test_pages_render_without_secrets(staff_client, published):
    endpoint, secret, event = published
    delivery = WebhookDelivery.objects.get()
    for model, obj in (
        ("webhookendpoint", endpoint),
        ("webhookevent", event),
        ("webhookdelivery", delivery),
        ("webhookdeliveryattempt", None),
    ):
        listing = staff_client.get(f"/admin/rivya_webhooks/{model}/")
        assert listing.status_code == 200, model
        if obj is not None:
            page = staff_client.get(f"/admin/rivya_webhooks/{model}/{obj.pk}/change/")
            assert page.status_code == 200, model
            assert secret.encode() not in page.content
            assert endpoint.secret_encrypted.encode() not in page.content


def test_redeliver_actions(staff_client, published):
    endpoint, _, event = published
    WebhookDelivery.objects.update(state="failed", next_attempt_at=None, retry_count=10)
    response = staff_client.post(
        "/admin/rivya_webhooks/webhookevent/", {"action": "redeliver", "_selected_action": [event.pk]}
    )
    assert response.status_code == 302
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.next_trigger, delivery.retry_count) == ("pending", "manual", 0)
    WebhookDelivery.objects.update(state="failed", next_attempt_at=None)
    staff_client.post(
        "/admin/rivya_webhooks/webhookdelivery/", {"action": "redeliver", "_selected_action": [delivery.pk]}
    )
    assert WebhookDelivery.objects.get().state == "pending"
    staff_client.post(
        "/admin/rivya_webhooks/webhookendpoint/", {"action": "disable_endpoints", "_selected_action": [endpoint.pk]}
    )
    assert not WebhookEndpoint.objects.get().enabled
    assert WebhookEvent.objects.count() == 1
