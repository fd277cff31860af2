"""Every settings page, Studio and the admin key list fit the screen with realistic data.

An account with 50 keys (long names, some rolling, some revoked), 50 generations
(long error messages, four outputs each, submitted by keys and from Studio), 50
ledger entries with long notes, a chat session of long messages and a dozen webhook endpoints with long URLs is
shown at a phone's width (390 px) and at 1,024, 1,280 and 1,600 px. At each
width no element may be wider than its container (see ``tests.e2e.browser.misfits``),
ids stay on one line, and keys appear by name and prefix. Screenshots of every
page at every width are kept in ``test-artifacts/screenshots/fit/``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from rivya_api.accounts import account_for_user
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.files.services import file_create
from rivya_api.generations.models import GenerationTask
from rivya_api.keys.services import api_key_create, api_key_revoke, api_key_roll
from rivya_billing.services import credits_grant, credits_release, credits_reserve, credits_settle
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEvent
from rivya_webhooks.services import webhook_endpoint_create
from tests import factories, media
from tests.e2e.browser import FIT_WIDTHS, SERVER_MEDIA_ROOT, assert_fits, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_KEY_NAME = "Production backend: nightly batch renderer for the marketing-campaigns team #{}"
LONG_NOTE = (
    "Top-up for the autumn campaign, approved by finance (ticket FIN-{}), covering the "
    "storyboard renders and the voice-over drafts for all eleven regional markets"
)
LONG_URL = "https://hooks.example-customer-with-a-long-domain-name.com/integrations/rivya/v1/endpoints/{}/events"
MODELS = [
    ("rivya-image-1", "image"),
    ("rivya-audio-1", "audio"),
    ("rivya-video-1", "video"),
    ("rivya-image-hd", "image"),
]


def seed(account: Any, user: Any) -> dict[str, Any]:
    """The realistic account: returns a few of the objects the test looks at."""
    now = timezone.now()
    keys = []
    for n in range(50):
        key, _ = api_key_create(account=account, name=LONG_KEY_NAME.format(n), created_by=user, ip="203.0.113.7")
        keys.append(key)
    for key in keys[:5]:
        api_key_roll(api_key=key, grace=timedelta(hours=24), actor=user, ip="203.0.113.7")
    for key in keys[5:10]:
        api_key_revoke(api_key=key, actor=user, ip="2001:db8:85a3::8a2e:370:7334")
    credits_grant(account=account, amount=1_000_000, reference="opening-balance", description="Opening balance")
    for n in range(50):
        note = LONG_NOTE.format(n)
        credits_grant(account=account, amount=100 + n, reference=f"campaign-top-up-{n}", description=note)
    outputs = [
        file_create(account=account, content=media.png((640, 480)), filename=f"o{n}.png", purpose="generation_output")
        for n in range(4)
    ]
    tasks = []
    statuses = ["succeeded", "succeeded", "failed", "canceled", "running"]
    for n in range(50):
        model, kind = MODELS[n % len(MODELS)]
        status = statuses[n % len(statuses)]
        by_key = n % 3 != 0
        task = GenerationTask.objects.create(
            account=account,
            submitted_by=keys[20 + n % 20].public_id if by_key else f"user:{user.pk}",
            source="api" if by_key else "studio",
            model=model,
            kind=kind,
            input={"prompt": "a lighthouse at dusk " * 10},
            status=status,
            progress=40 if status == "running" else 100,
            price=8,
            charged=8 if status == "succeeded" else 0,
            refunded=8 if status in ("failed", "canceled") else 0,
            error_code="upstream_error" if status == "failed" else "",
            error_message=(
                "The upstream image service answered 502 Bad Gateway three times in a row; "
                "the reserved credits were released. Try again in a few minutes."
                if status == "failed"
                else ""
            ),
            queued_at=now,
            heartbeat_at=now if status == "running" else None,
            deadline_at=now + timedelta(hours=1),
            expires_at=now + timedelta(days=7),
        )
        credits_reserve(account=account, amount=8, reference=task.public_id, actor=task.submitted_by)
        if status == "succeeded":
            credits_settle(account=account, reference=task.public_id, amount=8)
            task.outputs.set(outputs)
        elif status in ("failed", "canceled"):
            credits_release(account=account, reference=task.public_id)
        tasks.append(task)
    endpoints = []
    for n in range(12):
        endpoint, _ = webhook_endpoint_create(
            account=account,
            url=LONG_URL.format(f"customer-workspace-{n:04d}"),
            event_types=["generation.succeeded", "generation.failed", "generation.canceled"] if n % 2 else ["*"],
            description="Forwards finished generations to the asset pipeline of the regional marketing team",
            resolver=lambda host: ["93.184.215.14"],  # a public address: nothing is sent in this test
        )
        endpoints.append(endpoint)
    # The second endpoint's delivery log: finished deliveries (so nothing is sent), long error
    # messages and response bodies, several attempts each.
    for n in range(12):
        event = WebhookEvent.objects.create(
            account=account, type="generation.succeeded", data={}, payload="{}", created_at=now
        )
        state = "succeeded" if n % 2 else "failed"
        delivery = WebhookDelivery.objects.create(
            event=event, endpoint=endpoints[1], state=state, attempts_count=3, created_at=now
        )
        for attempt in range(3):
            ok = state == "succeeded" and attempt == 2
            WebhookDeliveryAttempt.objects.create(
                delivery=delivery,
                trigger="scheduled",
                status_code=200 if ok else 503,
                error="" if ok else "http_status",
                error_message="" if ok else "The endpoint answered 503 Service Unavailable: " + LONG_NOTE.format(n),
                latency_ms=1234,
                response_body='{"status":"unavailable","detail":"' + "upstream-maintenance-window-" * 8 + '"}',
                created_at=now,
            )
    session = ChatSession.objects.create(
        account=account, model="rivya-chat-1", title="Localising the storyboard captions for the regional markets"
    )
    for n in range(6):
        answer = ChatMessage.objects.create(session=session, role="assistant", content=LONG_NOTE * 3, turn_id=f"t{n}")
        answer.turn_id = answer.public_id
        answer.credits_charged = 2
        answer.save()
        ChatMessage.objects.create(session=session, role="user", content=LONG_URL * 2, turn_id=answer.turn_id)
        reference = f"chat_turn:{answer.turn_id}"
        credits_reserve(account=account, amount=3, reference=reference, actor=keys[25].public_id)
        credits_settle(account=account, reference=reference, amount=2)
    return {"keys": keys, "tasks": tasks, "endpoints": endpoints, "session": session}


@pytest.fixture
def seeded(live_asgi: Any, settings: Any) -> dict[str, Any]:
    settings.MEDIA_ROOT = str(SERVER_MEDIA_ROOT)  # the outputs are served by the live server
    user = factories.user_create("marketing-operations-lead-asha", is_staff=True, is_superuser=True)
    data = seed(account_for_user(user), user)
    data["user"] = user
    return data


def test_every_page_fits_at_every_width(page, seeded):
    user, keys, tasks, endpoints = seeded["user"], seeded["keys"], seeded["tasks"], seeded["endpoints"]
    log_in(page, user.username, "pw-" + user.username)
    succeeded = next(task for task in tasks if task.status == "succeeded")
    pages = {
        "api-keys": "/settings/api-keys",
        "api-key-detail": f"/settings/api-keys/{keys[0].public_id}",
        "api-key-roll": f"/settings/api-keys/{keys[30].public_id}/roll",
        "api-key-revoke": f"/settings/api-keys/{keys[30].public_id}/revoke",
        "credits": "/settings/credits",
        "generations": "/settings/generations",
        "generation-detail": f"/settings/generations/{succeeded.public_id}",
        "chat-session": f"/settings/chat/{seeded['session'].public_id}",
        "webhooks": "/settings/webhooks",
        "webhook-detail": f"/settings/webhooks/{endpoints[1].public_id}",
        "studio": "/studio/",
        "admin-api-keys": "/admin/rivya_api/apikey/",
        # The documentation a newcomer reads beside them (code blocks scroll inside themselves).
        **{f"docs-{page or 'index'}": f"/docs/{page}" for page in ("", "quickstart", "models", "sdk", "webhooks")},
    }
    failures = {}
    for name, path in pages.items():
        assert page.goto(path).status == 200, path
        for width in FIT_WIDTHS:
            # Django's admin keeps its navigation and filter beside the list; where that leaves the
            # list less room than its columns need, the list scrolls sideways inside its own box.
            scrollers = "#changelist .results" if name.startswith("admin") and width < 1280 else ""
            problems = assert_fits(page, f"fit/{name}", width, strict=False, scroll_containers=scrollers)
            if problems:
                failures[f"{name}@{width}"] = problems
    report = "\n".join(f"{where}:\n  " + "\n  ".join(problems) for where, problems in failures.items())
    assert failures == {}, "elements wider than their container:\n" + report


def test_generations_show_ids_whole_and_keys_by_name(page, seeded):
    user, tasks = seeded["user"], seeded["tasks"]
    log_in(page, user.username, "pw-" + user.username, next_path="/settings/generations")
    by_key = next(task for task in tasks[::-1] if task.source == "api" and task.status == "succeeded")
    row = page.locator(f'tr[data-task-id="{by_key.public_id}"]')
    for width in FIT_WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        # The model id and the task id are one line each (not "rivya-/image-/1").
        for field in ("model", "task"):
            box = row.locator(f"[data-field={field}] .id").first
            assert box.evaluate("e => e.getClientRects().length") == 1, (field, width)
            height = box.evaluate("e => e.getBoundingClientRect().height")
            line = box.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20")
            assert height <= line * 1.5, (field, width, height)
        # The key is shown by its name and prefix, not its raw id.
        source = row.locator("[data-field=source]").inner_text()
        key = next(key for key in seeded["keys"] if key.public_id == by_key.submitted_by)
        assert key.name in source or row.locator("[data-field=source] [title]").first.get_attribute("title").startswith(
            key.name
        )
        assert key.prefix in source
        assert key.public_id not in source
        # Every output is on screen, inside the table's column.
        outputs = row.locator("[data-field=outputs] img")
        assert outputs.count() == 4
