"""Quiet logs in steady state (issue 22, finding 10): idle sweeps log nothing at INFO, and
downloads stream under ASGI without Django's StreamingHttpResponse warning."""

from __future__ import annotations

import importlib
import logging
import warnings

import pytest
from asgiref.sync import async_to_sync
from celery import current_app
from django.test import AsyncClient

from rivya_api.common.logging import PeriodicTaskFilter
from tests import media

SWEEP = "rivya_webhooks.sweep"


def record(logger: str, level: int = logging.INFO, data: dict | None = None, args: tuple = ()) -> logging.LogRecord:
    entry = logging.LogRecord(logger, level, __file__, 1, "message", args, None)
    if data is not None:
        entry.data = data
    return entry


@pytest.mark.parametrize(
    ("entry", "kept"),
    [
        # celery.app.trace "Task … succeeded in …s: <return value>"
        (record("celery.app.trace", data={"name": SWEEP, "return_value": "0"}), False),
        (record("celery.app.trace", data={"name": SWEEP, "return_value": "None"}), False),
        (record("celery.app.trace", data={"name": SWEEP, "return_value": "{'requeued': 0, 'failed': 0}"}), False),
        (record("celery.app.trace", data={"name": SWEEP, "return_value": "3"}), True),  # it did work
        (record("celery.app.trace", data={"name": SWEEP, "return_value": "{'requeued': 1, 'failed': 0}"}), True),
        (record("celery.app.trace", data={"name": "rivya_webhooks.deliver", "return_value": "None"}), True),
        (record("celery.app.trace", logging.ERROR, data={"name": SWEEP, "return_value": "0"}), True),
        # celery.worker.strategy "Task … received"
        (record("celery.worker.strategy", data={"name": SWEEP, "id": "x"}), False),
        (record("celery.worker.strategy", data={"name": "rivya_webhooks.deliver", "id": "x"}), True),
        # celery.beat "Scheduler: Sending due task %s (%s)"
        (record("celery.beat", args=("rivya-webhooks-sweep", SWEEP)), False),
        (record("celery.beat", args=("one-off", "not.periodic")), True),
        (record("rivya.access", data={"name": SWEEP}), False),  # any logger with Celery's shape
        (record("rivya.access"), True),
    ],
)
def test_the_filter_drops_idle_sweep_lines_only(entry, kept):
    assert SWEEP in {task["task"] for task in current_app.conf.beat_schedule.values()}
    assert PeriodicTaskFilter().filter(entry) is kept


def test_debug_logging_shows_them_all():
    logger = logging.getLogger("celery.app.trace")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        assert PeriodicTaskFilter().filter(record("celery.app.trace", data={"name": SWEEP, "return_value": "0"}))
    finally:
        logger.setLevel(previous)


@pytest.mark.django_db(transaction=True)
def test_idle_sweep_runs_log_nothing_at_info_and_other_tasks_still_do(caplog):
    """Through the project's LOGGING: the filter sits on Celery's loggers, before anything is emitted."""
    caplog.set_level(logging.INFO)
    # Every app's tasks, as a worker has them (not through Celery's loader: its Django fixup
    # would set logging up again and drop pytest's capturing handler).
    for module in ("rivya_api.tasks", "rivya_billing.tasks", "rivya_webhooks.tasks"):
        importlib.import_module(module)
    for entry in current_app.conf.beat_schedule.values():
        current_app.tasks[entry["task"]].apply()
    assert not [r for r in caplog.records if r.name.startswith("celery")], [r.getMessage() for r in caplog.records]
    # Not a periodic task (a delivery with nothing to send): its line stays.
    current_app.tasks["rivya_webhooks.deliver"].apply(kwargs={"delivery_id": 0})
    lines = [r.getMessage() for r in caplog.records if r.name == "celery.app.trace"]
    assert len(lines) == 1
    assert "rivya_webhooks.deliver" in lines[0]
    assert "succeeded" in lines[0]


# --- downloads under ASGI ------------------------------------------------------------------------


async def _drain(response) -> list[bytes]:
    """What Django's ASGI handler does with a streaming response: ``async for`` over it."""
    return [bytes(part) async for part in response]


@pytest.mark.django_db(transaction=True)
def test_a_file_download_under_asgi_streams_in_blocks_without_the_warning(account, api_key):
    from rivya_api.common.streaming import ASGI_BLOCK_SIZE
    from rivya_api.files.services import file_create

    content = media.wav(seconds=40)  # 640 kB: several blocks
    file = file_create(account=account, content=content, filename="long.wav", purpose="reference")
    headers = {"Authorization": f"Bearer {api_key[1]}"}

    async def fetch() -> tuple:
        response = await AsyncClient().get(f"/api/v1/files/{file.public_id}/content", headers=headers)
        return response, await _drain(response)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response, parts = async_to_sync(fetch)()
    assert response.status_code == 200
    assert response.is_async
    assert b"".join(parts) == content
    assert len(parts) == -(-len(content) // ASGI_BLOCK_SIZE)  # one block at a time, not the whole file
    assert int(response["Content-Length"]) == len(content)
    assert not [w for w in caught if "StreamingHttpResponse" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.django_db(transaction=True)
def test_the_ledger_export_under_asgi_streams_without_the_warning(member):
    from rivya_billing.services import credits_grant

    for n in range(3):
        credits_grant(account=member.account, amount=5, reference=f"grant:{n}")

    async def fetch() -> tuple:
        client = AsyncClient()
        await client.aforce_login(member.user)
        response = await client.get("/settings/credits/export.csv")
        return response, await _drain(response)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response, parts = async_to_sync(fetch)()
    assert response.status_code == 200
    assert response.is_async
    rows = b"".join(parts).decode().splitlines()
    assert rows[0].startswith("id,created_at,type")
    assert len(rows) == 4
    assert not [w for w in caught if "StreamingHttpResponse" in str(w.message)]


@pytest.mark.django_db
def test_downloads_under_wsgi_are_unchanged(account, api_key):
    """The synchronous path (WSGI, Django's test client) keeps its plain file iterator."""
    from django.test import Client

    from rivya_api.files.services import file_create

    file = file_create(account=account, content=media.png(), filename="a.png", purpose="reference")
    response = Client().get(f"/api/v1/files/{file.public_id}/content", HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")
    assert response.status_code == 200
    assert not response.is_async
    assert b"".join(response.streaming_content) == media.png()


@pytest.mark.django_db(transaction=True)
def test_static_files_under_asgi_stream_without_the_warning(settings):
    """make run serves the pages' CSS and scripts through WhiteNoise under ASGI; the first one warned."""
    settings.WHITENOISE_AUTOREFRESH = True  # as under DEBUG: found on disk when requested
    settings.WHITENOISE_USE_FINDERS = True  # in the apps, as make run's DEBUG does; no collectstatic in tests

    async def fetch() -> tuple:
        response = await AsyncClient().get("/static/rivya_api/site.css")
        return response, await _drain(response)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response, parts = async_to_sync(fetch)()
    assert response.status_code == 200
    assert response.is_async
    body = b"".join(parts)  # the app's file, or its copy in STATIC_ROOT where collectstatic ran
    assert body.startswith(b"/* Rivya's shared page style")
    assert len(body) == int(response["Content-Length"])
    assert not [w for w in caught if "StreamingHttpResponse" in str(w.message)], [str(w.message) for w in caught]
