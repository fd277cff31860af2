"""Django's middleware under the project's ASGI handler: hooks on the event loop, database work in a thread."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from django.contrib.sessions.models import Session
from django.test import AsyncClient
from django.test.client import AsyncClientHandler

from config import middleware
from tests.factories import user_create

ON_LOOP = [
    middleware.SecurityMiddleware,
    middleware.SessionMiddleware,
    middleware.CommonMiddleware,
    middleware.CsrfViewMiddleware,
    middleware.AuthenticationMiddleware,
    middleware.MessageMiddleware,
    middleware.XFrameOptionsMiddleware,
]


class ProjectHandler(middleware.EventLoopMiddlewareMixin, AsyncClientHandler):
    """The test client's handler, loading middleware as ``config.middleware.ASGIHandler`` does."""


def project_client() -> AsyncClient:
    client = AsyncClient()
    client.handler = ProjectHandler(enforce_csrf_checks=True)  # a form's CSRF check is part of what is tested
    return client


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False  # a sync_to_async worker thread
    return True


@pytest.fixture
def hook_threads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Record, for every hook of the middleware above, whether it ran on the event loop."""
    calls: list[tuple[str, bool]] = []
    for cls in ON_LOOP:
        for name in ("process_request", "process_view", "process_response"):
            original = getattr(cls, name, None)
            if original is None:
                continue

            def recorded(self, *args, _original=original, _label=f"{cls.__name__}.{name}"):
                calls.append((_label, on_event_loop()))
                return _original(self, *args)

            monkeypatch.setattr(cls, name, recorded)
    return calls


def api_request(secret: str) -> tuple[int, dict[str, str]]:
    response = async_to_sync(project_client().get)("/api/v1/models", headers={"Authorization": f"Bearer {secret}"})
    # Everything but what differs per request (its id, the rate limit's count and clock).
    per_request = ("x-request-id", "x-ratelimit-")
    headers = {name: value for name, value in response.headers.items() if not name.lower().startswith(per_request)}
    return response.status_code, headers


@pytest.mark.django_db
def test_an_api_request_runs_every_hook_on_the_event_loop(hook_threads, make_api_key, account, settings):
    _, secret = make_api_key(account)
    status, headers = api_request(secret)
    assert status == 200
    # What Django's stock middleware adds is all there.
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"]
    assert headers["Cross-Origin-Opener-Policy"]
    ran = {label for label, _ in hook_threads}
    assert {"SessionMiddleware.process_response", "CsrfViewMiddleware.process_view"} <= ran
    assert [label for label, loop in hook_threads if not loop] == []

    # Switched off: Django's own classes, the same response.
    settings.MIDDLEWARE_ON_EVENT_LOOP = False
    hook_threads.clear()
    assert api_request(secret) == (status, headers)
    assert hook_threads == []  # none of the event-loop variants was loaded


@pytest.mark.django_db(transaction=True)
def test_a_login_saves_its_session_from_a_thread(hook_threads):
    user = user_create()

    async def log_in_and_use_the_session():
        client = project_client()
        form = await client.get("/accounts/login/")  # sets the CSRF cookie the form must echo
        token = form.cookies["csrftoken"].value
        credentials = {"username": user.username, "password": "pw-" + user.username, "csrfmiddlewaretoken": token}
        login = await client.post("/accounts/login/", credentials)
        page = await client.get("/accounts/password_change/")  # login required
        return login, page

    login, page = async_to_sync(log_in_and_use_the_session)()
    assert login.status_code == 302, login.content[:300]
    assert page.status_code == 200
    assert Session.objects.count() == 1
    in_thread = {label for label, loop in hook_threads if not loop}
    # The session was written, and the form's CSRF check parsed its body: both off the loop.
    assert {"SessionMiddleware.process_response", "CsrfViewMiddleware.process_view"} <= in_thread
