"""The settings pages and Studio in a real browser (Chromium via Playwright) against a real ASGI server.

Each scenario is a user's path through the pages, checked where it matters:
at the API (does the key work?), in the browser (did the status change without
a reload, and did a WebSocket frame carry it?) and in the delivery log.
Screenshots of every page at desktop and mobile width land in
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_api.generations.models import GenerationTask
from rivya_api.keys.models import APIKey
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from tests import factories
from tests.e2e.browser import log_in, screenshots

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
    # The list calls the old key rolling, with its end, not active.
    page.goto("/settings/api-keys")
    old_row = page.locator(f'tr[data-key-id="{key.public_id}"]').inner_text()
    assert "rolling" in old_row
    assert "until" in old_row
    assert "active" not in old_row
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
    page.locator("table.audit a").first.click()
    screenshots(page, "api-key-detail")


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


def _png(size: int = 64) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (74, 58, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_studio_generation_updates_live_over_the_websocket(page, live_asgi, upstream, person):
    from tests.rivya_api.generations.standin import Reply

    user, password = person
    credits_grant(account=user, amount=100, reference="browser-test")
    # The upstream holds its answer until the test lets it go, so the change happens while the page watches.
    gate = threading.Event()
    image = base64.b64encode(_png()).decode()

    def answer(request):
        gate.wait(30)
        return Reply.json({"created": 1, "data": [{"b64_json": image}]})

    upstream.answer = answer
    frames: list[str] = []
    sockets: list[str] = []
    polls: list[str] = []
    page.on(
        "websocket", lambda ws: (sockets.append(ws.url), ws.on("framereceived", lambda payload: frames.append(payload)))
    )
    page.on("request", lambda request: polls.append(request.url) if "/generations/live" in request.url else None)

    log_in(page, user.username, password, next_path="/studio/")
    page.get_by_label("Model").select_option("rivya-image-hd")
    page.get_by_label("Prompt").fill("a lighthouse at dusk")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url("**/studio/")
    task = GenerationTask.objects.get(account=user)
    assert (task.source, task.submitted_by) == ("studio", f"user:{user.pk}")
    assert "Submitted " + task.public_id in page.locator(".messages").inner_text()
    row = page.locator(f'tr[data-task-id="{task.public_id}"]')

    # The socket is open and the task is running at the upstream, not finished.
    page.locator('[data-live-tasks][data-live-mode="websocket"]').wait_for()
    assert sockets
    assert sockets[0].endswith("/ws/tasks")
    deadline = time.monotonic() + 15
    while not upstream.requests:
        assert time.monotonic() < deadline, "the generation never reached the upstream"
        time.sleep(0.05)
    page.locator(f'tr[data-task-id="{task.public_id}"][data-status="running"]').wait_for()
    page.evaluate("window.__sameDocument = true")
    frames_before = len(frames)

    gate.set()
    page.locator(f'tr[data-task-id="{task.public_id}"][data-status="succeeded"]').wait_for()
    output = row.locator("[data-field=outputs] img")
    output.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=output.element_handle())
    assert row.locator("[data-field=status]").inner_text() == "succeeded"
    assert "8 charged" in row.locator("[data-field=credits]").inner_text()

    # No reload, no polling: a WebSocket frame carried the change.
    assert page.evaluate("window.__sameDocument") is True
    assert polls == []
    carried = [json.loads(frame) for frame in frames[frames_before:]]
    assert any(
        message["type"] == "generation.update"
        and message["task"]["id"] == task.public_id
        and message["task"]["status"] == "succeeded"
        for message in carried
    ), carried
    # Same wallet: the Studio generation was charged to the account's wallet, and the page shows it.
    wallet = wallet_get(account=user)
    assert (wallet.balance, wallet.held) == (92, 0)
    page.locator('[data-wallet="held"]', has_text="0").wait_for()
    assert page.locator('[data-wallet="balance"]').inner_text() == "92"
    screenshots(page, "studio")

    # The same task, in the account's task list and at the API with one of its keys.
    page.goto("/settings/generations")
    assert page.locator(f'tr[data-task-id="{task.public_id}"][data-status="succeeded"]').count() == 1
    screenshots(page, "generations")
    page.goto("/settings/credits")
    assert page.locator(f'a[href="/settings/generations/{task.public_id}"]').count() >= 1
    screenshots(page, "credits")


def test_generations_page_falls_back_to_polling_without_websockets(page, live_asgi, upstream, person):
    from tests.rivya_api.generations.standin import Reply

    user, password = person
    credits_grant(account=user, amount=100, reference="browser-test")
    gate = threading.Event()
    image = base64.b64encode(_png()).decode()
    upstream.answer = lambda request: (gate.wait(30), Reply.json({"data": [{"b64_json": image}]}))[1]
    # A browser (or proxy) without WebSockets.
    page.add_init_script("delete window.WebSocket")
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url) if "/generations/live" in request.url else None)
    log_in(page, user.username, password, next_path="/studio/")
    page.get_by_label("Model").select_option("rivya-image-hd")
    page.get_by_label("Prompt").fill("a polled lighthouse")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_url("**/studio/")
    task = GenerationTask.objects.get(account=user)
    page.locator('[data-live-tasks][data-live-mode="polling"]').wait_for()
    gate.set()
    page.locator(f'tr[data-task-id="{task.public_id}"][data-status="succeeded"]').wait_for()
    assert polls
    assert task.public_id in polls[-1]


def test_pages_work_without_javascript(chromium, live_asgi, person, make_api_key):
    """Everything but the live updates and the copy button works with JavaScript off."""
    user, password = person
    context = chromium.new_context(base_url=live_asgi.url, java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, user.username, password)
        page.get_by_label("Name").fill("no-js key")
        page.get_by_role("button", name="Create key").click()
        secret = page.locator("#new-secret").input_value()
        assert secret.startswith("rvya_sk_")
        assert not page.get_by_role("button", name="Copy").is_visible()  # needs JavaScript, so it stays hidden
        page.goto("/settings/api-keys")
        key = APIKey.objects.get(account=user, name="no-js key")
        page.locator(f'tr[data-key-id="{key.public_id}"]').get_by_role("link", name="Revoke").click()
        page.get_by_role("button", name="Revoke key").click()
        page.wait_for_url("**/settings/api-keys")
        key.refresh_from_db()
        assert key.revoked_at is not None
        for path in ("/settings/credits", "/settings/webhooks", "/settings/generations", "/studio/"):
            page.goto(path)
            assert page.locator("h1").count() == 1, path
        page.goto("/settings/credits")
        assert page.locator("svg.chart").count() == 1  # drawn by the server
    finally:
        context.close()


def test_every_kind_of_page_works_under_the_content_security_policy(page, live_asgi, person):
    """The page fixture fails on any CSP violation; this walks the pages the others do not."""
    user, password = person
    credits_grant(account=user, amount=40, reference="csp-grant")
    user.is_staff = user.is_superuser = True
    user.save()
    log_in(page, user.username, password, next_path="/settings/credits")
    response = page.goto("/settings/credits")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy  # noqa: PT018
    assert page.locator(".legend .swatch rect").count() >= 1  # the legend's colours draw without inline style
    for path in ("/docs/", "/docs/quickstart", "/admin/", "/admin/rivya_api/apikey/", "/studio/"):
        assert page.goto(path).status == 200, path
    page.goto("/api/v1/docs")
    page.locator(".swagger-ui .opblock").first.wait_for()  # Swagger UI ran: its script is not inline any more
    with live_asgi.api() as client:
        assert "content-security-policy" not in client.get("/api/v1/models").headers  # JSON carries no policy
