"""The URL resolved once (``rivya_api.common.resolve_once``) with a language-dependent URLconf: a
host (or deployer) adding ``LocaleMiddleware`` activates the request's language after the body
limit resolved the path, and a translated route matches by the active language, so the handler
must not take the earlier match. This module is the test's URLconf."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.http import HttpResponse
from django.urls import path
from django.utils.functional import lazy
from django.utils.translation import get_language

from config.middleware import ASGIHandler
from rivya_api.common.asgi import BodyLimitMiddleware

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db(transaction=True)]


def about_route() -> str:
    """What ``gettext_lazy("about")`` gives with a German catalogue (the project ships none)."""
    return {"de": "ueber"}.get((get_language() or "")[:2], "about")


def about(request: Any) -> HttpResponse:
    return HttpResponse("about-view")


def page(request: Any, slug: str) -> HttpResponse:
    return HttpResponse(f"page-view {slug}")


urlpatterns = [path(lazy(about_route, str)(), about), path("<slug:slug>", page)]


def call(url: str, language: str) -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": url, "raw_path": url.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"testserver"), (b"accept-language", language.encode())],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}  # fmt: skip
    sent: list[dict[str, Any]] = []
    done = asyncio.Event()
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    asyncio.run(BodyLimitMiddleware(ASGIHandler())(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize("on", [False, True])
def test_a_request_in_another_language_is_served_by_the_view_django_picks(settings, rivya_settings, on):
    at = settings.MIDDLEWARE.index("django.middleware.common.CommonMiddleware")
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE[:at],
        "django.middleware.locale.LocaleMiddleware",
        *settings.MIDDLEWARE[at:],
    ]
    rivya_settings("RIVYA_API", RESOLVE_ONCE=on)
    # LocaleMiddleware activates "de": "/about" is no longer the about route but a page's slug.
    assert call("/about", "de") == (200, b"page-view about")
    assert call("/ueber", "de") == (200, b"about-view")
    assert call("/about", "en") == (200, b"about-view")
