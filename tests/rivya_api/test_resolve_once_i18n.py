"""The URL resolved once (``rivya_api.common.resolve_once``) with a language-dependent URLconf: a
host (or deployer) adding ``LocaleMiddleware`` activates the request's language after the body
limit resolved the path, and a translated route matches by the active language, so the handler
must not take the earlier match. This module is the test's URLconf."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpResponse
from django.urls import path
from django.utils.functional import lazy
from django.utils.translation import get_language

from tests.rivya_api.test_resolve_once import call as asgi_call

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
    """The status and body of ``url`` asked in ``language``, through the project's ASGI stack."""
    status, _, content = asgi_call(url, extra=((b"accept-language", language.encode()),))
    return status, content


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
