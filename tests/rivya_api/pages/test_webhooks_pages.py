"""The webhooks settings page: endpoints, reveal-once and rotated secrets, test events, delivery log, redeliver."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from rivya_webhooks.services import webhook_delivery_attempt, webhook_endpoint_create
from tests.rivya_webhooks.receiver import Receiver, Reply

pytestmark = pytest.mark.django_db

PAGE = "/settings/webhooks"


@pytest.fixture
def receiver():
    with Receiver(lambda request: Reply(200, body=b'{"received": true}')) as server:
        yield server


@pytest.fixture(autouse=True)
def _local_targets(settings, rivya_settings):
    """The receiver is on 127.0.0.1 over http: allowed only in DEBUG with private networks allowed."""
    settings.DEBUG = True
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=True)


def run_due() -> int:
    """What the sweeper and a worker do: send every due delivery once."""
    due = WebhookDelivery.objects.filter(state="pending", next_attempt_at__lte=timezone.now(), endpoint__enabled=True)
    return sum(1 for pk in list(due.values_list("pk", flat=True)) if webhook_delivery_attempt(delivery_id=pk))


def shown_secret(html: str) -> str:
    return re.search(r'value="(whsec_[^"]+)"', html).group(1)


def test_create_an_endpoint_and_see_its_secret_once(member, receiver):
    response = member.client.post(
        PAGE, {"url": receiver.url("/hook"), "description": "orders", "event_types": ["webhook.test"]}
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = shown_secret(response.content.decode())
    endpoint = WebhookEndpoint.objects.get(account=member.account)
    assert endpoint.event_types == ["webhook.test"]
    assert endpoint.signing_secrets(timezone.now()) == [secret]
    for path in (PAGE, f"{PAGE}/{endpoint.public_id}"):
        html = member.client.get(path).content.decode()
        assert receiver.url("/hook") in html
        assert secret not in html


def test_a_refused_url_is_a_form_error(member, rivya_settings):
    rivya_settings("RIVYA_WEBHOOKS", ALLOW_PRIVATE_NETWORKS=False, ALLOW_LOOPBACK_IN_DEBUG=False)
    response = member.client.post(PAGE, {"url": "http://127.0.0.1:9/hook", "event_types": ["*"]})
    assert response.status_code == 400
    assert 'class="field-error"' in response.content.decode()
    assert not WebhookEndpoint.objects.filter(account=member.account).exists()
    response = member.client.post(PAGE, {"url": "https://example.com/hook"})
    assert "Choose at least one." in response.content.decode()


def test_edit_event_types_disable_enable_and_rotate(member, receiver):
    endpoint, first_secret = webhook_endpoint_create(account=member.account, url=receiver.url(), event_types=["*"])
    detail = f"{PAGE}/{endpoint.public_id}"
    response = member.client.post(detail, {"url": endpoint.url, "description": "x", "event_types": ["webhook.test"]})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.event_types, endpoint.description) == (["webhook.test"], "x")

    member.client.post(f"{detail}/enable", {"enabled": "false"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "Enable</button>" in member.client.get(detail).content.decode()
    member.client.post(f"{detail}/enable", {"enabled": "true"})
    endpoint.refresh_from_db()
    assert endpoint.enabled

    rotated = member.client.post(f"{detail}/rotate-secret")
    assert rotated["Cache-Control"] == "no-store"
    new_secret = shown_secret(rotated.content.decode())
    endpoint.refresh_from_db()
    assert endpoint.signing_secrets(timezone.now()) == [new_secret, first_secret]
    assert "also signs until" in member.client.get(detail).content.decode()


def test_test_event_shows_its_attempts_and_can_be_redelivered(member, receiver):
    endpoint, _ = webhook_endpoint_create(account=member.account, url=receiver.url(), event_types=["webhook.test"])
    detail = f"{PAGE}/{endpoint.public_id}"
    response = member.client.post(f"{detail}/test", follow=True)
    assert "Sent test event evt_" in response.content.decode()
    assert "No attempt yet." in response.content.decode()
    assert run_due() == 1
    assert len(receiver.requests) == 1
    html = member.client.get(detail).content.decode()
    event_id = re.search(r'data-event-id="(evt_[^"]+)"', html).group(1)
    attempt = WebhookDeliveryAttempt.objects.get(delivery__endpoint=endpoint)
    row = html.split(f'data-event-id="{event_id}"')[1].split("</tr>")[0]
    assert "webhook.test" in html
    assert "HTTP 200" in row
    assert f"{attempt.latency_ms} ms" in row
    assert "received" in row  # the response snippet

    member.client.post(f"{detail}/events/{event_id}/redeliver")
    assert run_due() == 1
    assert len(receiver.requests) == 2
    row = member.client.get(detail).content.decode().split(f'data-event-id="{event_id}"')[1].split("</tr>")[0]
    assert row.count("data-attempt-id=") == 2
    assert "manual" in row


def test_delete_after_confirmation(member, receiver):
    endpoint, _ = webhook_endpoint_create(account=member.account, url=receiver.url(), event_types=["*"])
    assert "Delete this endpoint?" in member.client.get(f"{PAGE}/{endpoint.public_id}/delete").content.decode()
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    member.client.post(f"{PAGE}/{endpoint.public_id}/delete")
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_another_accounts_endpoints_and_events_are_not_reachable(member, stranger, receiver):
    endpoint, secret = webhook_endpoint_create(account=member.account, url=receiver.url("/mine"), event_types=["*"])
    member.client.post(f"{PAGE}/{endpoint.public_id}/test")
    event_id = WebhookDelivery.objects.get(endpoint=endpoint).event.public_id
    assert receiver.url("/mine") not in stranger.client.get(PAGE).content.decode()
    base = f"{PAGE}/{endpoint.public_id}"
    for path in (base, f"{base}/delete"):
        assert stranger.client.get(path).status_code == 404, path
    posts = [
        (base, {"url": "https://evil.example/x", "event_types": ["*"]}),
        (f"{base}/enable", {"enabled": "false"}),
        (f"{base}/rotate-secret", {}),
        (f"{base}/test", {}),
        (f"{base}/delete", {}),
        (f"{base}/events/{event_id}/redeliver", {}),
    ]
    for path, data in posts:
        assert stranger.client.post(path, data).status_code == 404, path
    # Their own endpoint cannot redeliver the member's event either.
    own, _ = webhook_endpoint_create(account=stranger.account, url=receiver.url("/theirs"), event_types=["*"])
    assert stranger.client.post(f"{PAGE}/{own.public_id}/events/{event_id}/redeliver").status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert endpoint.url == receiver.url("/mine")
    assert endpoint.signing_secrets(timezone.now()) == [secret]
    assert WebhookDelivery.objects.filter(endpoint=own).count() == 0
