"""A newcomer's first hour, in a real browser, on a laptop (1,280 px) and on a phone (390 px).

Log in, create a key and use it, price and run a generation in Studio and watch
it finish live, roll the key and revoke it (with the key it replaced), add a webhook
endpoint and see its test event delivered. Every page on the way must fit the
screen (``tests.e2e.browser.assert_fits``); the screenshots are kept in
``test-artifacts/screenshots/newcomer/``.
"""

from __future__ import annotations

import base64
import threading
import time

import pytest

from rivya_api.generations.models import GenerationTask
from rivya_api.keys.models import APIKey
from rivya_billing.services import credits_grant
from tests import factories
from tests.e2e.browser import assert_fits, log_in
from tests.e2e.test_settings_browser import _png, api_answer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1280, 390])
def test_newcomer_path(page, live_asgi, upstream, width):
    from standardwebhooks.webhooks import Webhook

    from tests.rivya_api.generations.standin import Reply
    from tests.rivya_webhooks.receiver import Receiver
    from tests.rivya_webhooks.receiver import Reply as ReceiverReply

    user = factories.user_create(f"newcomer{width}")
    credits_grant(account=user, amount=100, reference="welcome")
    page.set_viewport_size({"width": width, "height": 900})

    def fits(step: str) -> None:
        assert_fits(page, f"newcomer/{step}", width)

    # Log in, and land on the API keys page.
    page.goto("/settings/api-keys")
    page.wait_for_url("**/accounts/login/?next=/settings/api-keys")
    fits("login")
    log_in(page, user.username, "pw-" + user.username)
    fits("api-keys-empty")

    # Create a key: its secret is shown once, and it works at the API.
    page.get_by_label("Name").fill("my first key")
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("heading", name="Key created").wait_for()
    secret = page.locator("#new-secret").input_value()
    fits("key-created")
    assert api_answer(live_asgi, secret) == (200, None)
    page.get_by_role("link", name="I have copied it").click()
    page.wait_for_url("**/settings/api-keys")
    key = APIKey.objects.get(account=user, name="my first key")

    # Studio: a generation, held at the upstream until the page is watching, finishes live.
    gate = threading.Event()
    image = base64.b64encode(_png()).decode()
    upstream.answer = lambda request: (gate.wait(30), Reply.json({"data": [{"b64_json": image}]}))[1]
    page.get_by_role("link", name="Studio").click()
    page.wait_for_url("**/studio/")
    fits("studio")
    # The chosen model's parameters are fields, and the price follows them before anything is submitted.
    page.get_by_label("Model").select_option("rivya-image-1")
    page.get_by_label("Prompt").fill("a lighthouse at dusk")
    page.locator("[data-price]", has_text="Price: 2 credits, 100 available.").wait_for()
    assert page.locator('fieldset[data-model="rivya-video-1"]').is_hidden()
    image_fields = page.locator('fieldset[data-model="rivya-image-1"]')
    image_fields.get_by_label("Width").fill("1024")
    image_fields.get_by_label("Height").fill("1024")
    page.locator("[data-price]", has_text="Price: 4 credits").wait_for()
    image_fields.get_by_label("Width").fill("5000")
    page.locator("[data-price] .field-error", has_text="1024").wait_for()
    fits("studio-price")
    page.get_by_label("Model").select_option("rivya-image-hd")
    assert image_fields.is_hidden()
    page.locator("[data-price]", has_text="Price: 8 credits").wait_for()
    assert GenerationTask.objects.filter(account=user).count() == 0  # pricing created nothing
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url("**/studio/")
    task = GenerationTask.objects.get(account=user)
    page.locator("[data-live-tasks][data-live-mode]").wait_for()
    page.locator(f'tr[data-task-id="{task.public_id}"][data-status="running"]').wait_for()
    fits("studio-running")
    page.evaluate("window.__sameDocument = true")
    gate.set()
    row = page.locator(f'tr[data-task-id="{task.public_id}"][data-status="succeeded"]')
    row.wait_for()
    row.locator("[data-field=outputs] img").wait_for()
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded instead of updating live"
    assert "8 charged" in row.locator("[data-field=credits]").inner_text()
    assert page.locator('[data-wallet="available"]').inner_text() == "92"
    fits("studio-succeeded")

    # Roll the key with an hour's grace; both secrets work, and the old one is listed as rolling.
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url("**/settings/api-keys")
    page.locator(f'tr[data-key-id="{key.public_id}"]').get_by_role("link", name="Roll").click()
    fits("roll")
    page.get_by_label("1 hour").check()
    page.get_by_role("button", name="Roll key").click()
    page.get_by_role("heading", name="Key rolled").wait_for()
    new_secret = page.locator("#new-secret").input_value()
    fits("key-rolled")
    assert api_answer(live_asgi, secret) == (200, None)
    assert api_answer(live_asgi, new_secret) == (200, None)
    page.get_by_role("link", name="I have copied it").click()
    page.wait_for_url("**/settings/api-keys")
    assert "rolling" in page.locator(f'tr[data-key-id="{key.public_id}"]').inner_text()
    fits("api-keys-rolling")

    # Revoke the new key and, as offered, the old one still in its grace period: neither works.
    new_key = APIKey.objects.get(replaces=key)
    page.locator(f'tr[data-key-id="{new_key.public_id}"]').get_by_role("link", name="Revoke").click()
    assert page.locator("#revoke-predecessors").is_checked()
    fits("revoke")
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url("**/settings/api-keys")
    assert api_answer(live_asgi, new_secret) == (401, "api_key_revoked")
    assert api_answer(live_asgi, secret) == (401, "api_key_revoked")
    fits("api-keys-revoked")

    # Add a webhook endpoint on this machine; its test event arrives signed with the secret shown.
    with Receiver(lambda request: ReceiverReply(200, body=b'{"ok": true}')) as receiver:
        page.get_by_role("link", name="Webhooks").click()
        page.wait_for_url("**/settings/webhooks")
        fits("webhooks-empty")
        page.get_by_label("Endpoint URL").fill(receiver.url("/rivya"))
        page.get_by_label("All events, including types added later").check()
        page.get_by_role("button", name="Add endpoint").click()
        page.get_by_role("heading", name="Endpoint added").wait_for()
        webhook_secret = page.locator("#new-secret").input_value()
        fits("webhook-secret")
        page.get_by_role("link", name="I have copied it").click()
        page.get_by_role("button", name="Send test event").click()
        deadline = time.monotonic() + 15
        while "HTTP 200" not in page.locator("table.deliveries").inner_text():
            assert time.monotonic() < deadline, "the test event was never delivered"
            page.wait_for_timeout(300)
            page.reload()
        (request,) = receiver.requests
        Webhook(webhook_secret).verify(request.body, request.headers)
        fits("webhook-delivered")
