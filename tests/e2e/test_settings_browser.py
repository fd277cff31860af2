"""The settings pages and Studio in a real browser (Chromium via Playwright) against a real ASGI server.

Each scenario is a user's path through the pages, checked where it matters:
at the API (does the key work?), in the browser (did the status change without
a reload, and did a WebSocket frame carry it?) and in the delivery log.
Screenshots of every page at desktop and mobile width land in
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_api.keys.models import APIKey
from tests import factories
from tests.e2e.browser import log_in, overflowing, screenshots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def person() -> tuple:
    user = factories.user_create("asha")
    return user, "pw-asha"


def api_answer(live_asgi, secret: str) -> tuple[int, str | None]:
    with live_asgi.api(secret) as client:
        response = client.get("/api/v1/models")
    return response.status_code, (response.json()["error"]["code"] if response.status_code >= 400 else None)


def test_keys_create_use_roll_and_revoke(page, live_asgi, person):
    user, password = person
    log_in(page, user.username, password)

    # Create: the secret is on the page once, with a copy button and a warning.
    page.get_by_label("Name").fill("browser key")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("heading", name="Key created").wait_for()
    assert "shown only this once" in page.get_by_role("alert").inner_text()
    secret = page.locator("#new-secret").input_value()
    assert secret.startswith("rvya_sk_")
    copy = page.get_by_role("button", name="Copy")
    assert copy.is_visible()
    copy.click()
    page.locator(".copy-status").filter(has_text="Cop").wait_for()
    screenshots(page, "api-key-created")
    assert api_answer(live_asgi, secret) == (200, None)

    # Back on the list the key is masked; the secret is nowhere on the page.
    page.get_by_role("link", name="I have copied it").click()
    page.wait_for_url("**/settings/api-keys")
    assert secret not in page.content()
    key = APIKey.objects.get(account=user, name="browser key")
    row = page.locator(f'tr[data-key-id="{key.public_id}"]')
    assert key.masked in row.inner_text()
    assert "active" in row.inner_text()

    # Roll with a one-hour grace: both secrets work.
    row.get_by_role("link", name="Roll").click()
    page.get_by_label("1 hour").check()
    page.get_by_role("button", name="Roll key").click()
    page.get_by_role("heading", name="Key rolled").wait_for()
    new_secret = page.locator("#new-secret").input_value()
    assert new_secret != secret
    assert api_answer(live_asgi, secret) == (200, None)
    assert api_answer(live_asgi, new_secret) == (200, None)
    # The grace period ends (the server's clock can't be moved, so its deadline is moved instead).
    key.refresh_from_db()
    assert timedelta(minutes=59) < key.expires_at - timezone.now() <= timedelta(hours=1)
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_answer(live_asgi, secret) == (401, "api_key_expired")
    assert api_answer(live_asgi, new_secret) == (200, None)

    # Revoke the new key, after confirming; the API refuses it at once.
    page.goto("/settings/api-keys")
    new_key = APIKey.objects.get(replaces=key)
    page.locator(f'tr[data-key-id="{new_key.public_id}"]').get_by_role("link", name="Revoke").click()
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url("**/settings/api-keys")
    assert "Revoked browser key" in page.locator(".messages").inner_text()
    assert api_answer(live_asgi, new_secret) == (401, "api_key_revoked")

    # The audit trail shows all of it, with who and from where.
    activity = page.locator("table.audit").inner_text()
    for action in ("Created", "Rolled", "Revoked"):
        assert action in activity
    assert user.username in activity
    assert "127.0.0.1" in activity
    screenshots(page, "api-keys")
    page.set_viewport_size({"width": 390, "height": 844})
    assert overflowing(page) == []


def test_login_page_and_anonymous_redirect(page, person):
    page.goto("/settings/api-keys")
    page.wait_for_url("**/accounts/login/?next=/settings/api-keys")
    screenshots(page, "login")
    page.get_by_label("Username").fill(person[0].username)
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").is_visible()


def test_webhook_endpoint_test_event_shows_its_attempt(page, person):
    from standardwebhooks.webhooks import Webhook

    from tests.rivya_webhooks.receiver import Receiver, Reply

    user, password = person
    with Receiver(lambda request: Reply(200, body=b'{"ok": true}')) as receiver:
        log_in(page, user.username, password, next_path="/settings/webhooks")
        page.get_by_label("Endpoint URL").fill(receiver.url("/rivya"))
        page.get_by_label("Description").fill("browser test")
        page.get_by_label("All events, including types added later").check()
        page.get_by_role("button", name="Add endpoint").click()
        page.get_by_role("heading", name="Endpoint added").wait_for()
        secret = page.locator("#new-secret").input_value()
        assert secret.startswith("whsec_")
        screenshots(page, "webhook-secret")
        page.get_by_role("link", name="I have copied it").click()
        assert secret not in page.content()

        page.get_by_role("button", name="Send test event").click()
        assert "Sent test event evt_" in page.locator(".messages").inner_text()
        # Delivery happens in the background; the log shows the attempt once it is made.
        deadline = time.monotonic() + 15
        while "HTTP 200" not in page.locator("table.deliveries").inner_text():
            assert time.monotonic() < deadline, "the attempt never appeared in the delivery log"
            page.wait_for_timeout(300)
            page.reload()
        row = page.locator("table.deliveries tbody tr").first
        assert "webhook.test" in row.inner_text()
        assert " ms" in row.inner_text()
        assert "succeeded" in row.inner_text()
        # What arrived was signed with the secret the page showed.
        (request,) = receiver.requests
        Webhook(secret).verify(request.body, request.headers)
        screenshots(page, "webhook-endpoint")
        page.goto("/settings/webhooks")
        screenshots(page, "webhooks")
