"""``request_started``'s database receivers queued to the request's thread (``config.request_started``)
against Django's ``asend``, awaited on the event loop.

Requests go through the project's ASGI handler (``config.middleware.ASGIHandler``), as uvicorn sends
them, with ``REQUEST_STARTED_DEFERRED`` on and off: Django's receivers still close a connection a
thread was left holding before the view runs in that thread, a host's own receiver gets Django's
``asend``, and deferred, the request makes one thread call fewer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.core import signals
from django.db import connection
from django.dispatch import Signal
from django.http import JsonResponse
from django.urls import path

from config import request_threads
from config.middleware import ASGIHandler
from tests.test_request_threads import call, thread_serial

pytestmark = [pytest.mark.urls("tests.test_request_started"), pytest.mark.django_db(transaction=True)]


def state(request: Any) -> JsonResponse:
    return JsonResponse({"thread": thread_serial(), "connected": connection.connection is not None})


urlpatterns = [path("state", state)]


def body(response: dict[str, Any]) -> dict[str, Any]:
    import json

    assert response["status"] == 200, response
    return json.loads(response["body"])


def leave_an_obsolete_connection(executor: Any) -> int:
    """In ``executor``'s thread: a database connection past its age, as a request may leave one."""

    def dirty() -> int:
        connection.ensure_connection()
        connection.close_at = time.monotonic() - 1
        return thread_serial()

    return executor.submit(dirty).result()


@pytest.mark.parametrize("deferred", [True, False])
def test_a_leftover_connection_is_closed_before_the_view_runs(settings: Any, deferred: bool) -> None:
    settings.REQUEST_THREADS_REUSED = True
    settings.REQUEST_STARTED_DEFERRED = deferred
    app = ASGIHandler()
    request_threads._idle.clear()

    async def scenario() -> tuple[dict[str, Any], int]:
        first = body(await call(app, "/state"))
        await asyncio.sleep(0.05)  # its thread is back in the pool
        thread = leave_an_obsolete_connection(request_threads._idle[-1])
        assert thread == first["thread"]
        return body(await call(app, "/state")), thread

    second, thread = asyncio.run(scenario())
    assert second == {"thread": thread, "connected": False}


@pytest.mark.parametrize("deferred", [True, False])
def test_a_hosts_own_receiver_gets_djangos_asend(settings: Any, monkeypatch: pytest.MonkeyPatch, deferred: bool):
    settings.REQUEST_STARTED_DEFERRED = deferred
    app = ASGIHandler()
    calls: list[str] = []
    original = Signal.asend

    async def spied(self: Signal, sender: Any, **named: Any) -> Any:
        calls.append("asend")
        return await original(self, sender, **named)

    def host_receiver(**kwargs: Any) -> None:
        calls.append(f"receiver in thread {thread_serial()}")

    monkeypatch.setattr(Signal, "asend", spied)
    signals.request_started.connect(host_receiver)
    try:
        answer = body(asyncio.run(call(app, "/state")))
    finally:
        signals.request_started.disconnect(host_receiver)
    assert calls == ["asend", f"receiver in thread {answer['thread']}"]


@pytest.mark.parametrize(("deferred", "reused", "thread_calls"), [(True, True, 2), (False, True, 3), (True, False, 3)])
def test_deferred_the_request_makes_one_thread_call_fewer(
    settings: Any, monkeypatch: pytest.MonkeyPatch, deferred: bool, reused: bool, thread_calls: int
) -> None:
    settings.REQUEST_STARTED_DEFERRED = deferred
    settings.REQUEST_THREADS_REUSED = reused
    app = ASGIHandler()
    asyncio.run(call(app, "/state"))
    count = 0
    original = SyncToAsync.__call__

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    body(asyncio.run(call(app, "/state")))
    assert count == thread_calls  # request_started's receivers, the view, response.close
