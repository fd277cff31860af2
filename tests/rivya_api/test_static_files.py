"""Static files under ASGI: served by WhiteNoise without making the middleware chain sync."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient


def test_no_middleware_forces_the_asgi_chain_back_to_sync(caplog, settings):
    settings.DEBUG = True  # Django logs each adaptation only in debug mode
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler()
    adapted = [r.getMessage() for r in caplog.records if "adapted for middleware" in r.getMessage()]
    assert not adapted, adapted


@pytest.mark.django_db
@pytest.mark.parametrize("autorefresh", [False, True], ids=["manifest", "autorefresh"])
def test_static_files_and_other_requests_both_answer_under_asgi(settings, autorefresh):
    settings.WHITENOISE_USE_FINDERS = True  # no collectstatic in tests: find files in the apps
    settings.WHITENOISE_AUTOREFRESH = autorefresh

    async def fetch() -> tuple:
        client = AsyncClient()
        css = await client.get("/static/rivya_api/site.css")
        # Under ASGI the file streams through an async iterator (no StreamingHttpResponse warning).
        body = b"".join([chunk async for chunk in css.streaming_content])
        health = await client.get("/healthz")
        missing = await client.get("/static/rivya_api/missing.css")
        return css, body, health, missing

    css, body, health, missing = async_to_sync(fetch)()
    assert css.status_code == 200
    assert css["Content-Type"].startswith("text/css")
    assert body
    assert health.status_code == 200
    assert missing.status_code == 404
