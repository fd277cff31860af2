"""``request_started``'s database receivers queued to the request's thread (``config.request_started``)
against Django's ``asend``, awaited on the event loop.

Requests go through the project's ASGI handler (``config.middleware.ASGIHandler``), as uvicorn sends
them, with ``REQUEST_STARTED_DEFERRED`` on and off: Django's receivers still close a connection a
thread was left holding before the view runs in that thread, a host's own receiver gets Django's
``asend``, and deferred, the request makes one thread call fewer. With ``REQUEST_STARTED_ON_FIRST_CALL``
they wait for the request thread's first call and ride its hand-off: a request that never uses its
thread (an async view whose stream gives it back) does not wake it at all.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.core import signals
from django.db import connection
from django.dispatch import Signal
from django.http import JsonResponse, StreamingHttpResponse
from django.urls import path

from config import request_threads
from config.middleware import ASGIHandler
from rivya_api.common.request_thread import release_request_thread
from tests.test_request_threads import call, thread_serial

pytestmark = [pytest.mark.urls("tests.test_request_started"), pytest.mark.django_db(transaction=True)]


def state(request: Any) -> JsonResponse:
    return JsonResponse({"thread": thread_serial(), "connected": connection.connection is not None})


async def async_state(request: Any) -> JsonResponse:
    return JsonResponse({"async": True})


async def stream(request: Any) -> StreamingHttpResponse:
    async def body() -> Any:
        release_request_thread()  # as a chat stream's body starts (rivya_api.chat.sse)
        yield b"data: 1\n\n"

    return StreamingHttpResponse(body(), content_type="text/event-stream")


urlpatterns = [path("state", state), path("async", async_state), path("stream", stream)]


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


@pytest.mark.parametrize(("deferred", "on_first_call"), [(True, True), (True, False), (False, True)])
def test_a_leftover_connection_is_closed_before_the_view_runs(settings: Any, deferred: bool, on_first_call: bool):
    settings.REQUEST_THREADS_REUSED = True
    settings.REQUEST_STARTED_DEFERRED = deferred
    settings.REQUEST_STARTED_ON_FIRST_CALL = on_first_call
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


def request_thread_work(app: Any, url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], bool]:
    """(what the request handed to its reused thread, in order; whether the thread is idle again after)."""
    request_threads._idle.clear()
    asyncio.run(call(app, url))  # a warm request thread, then back in the pool
    assert wait_for_idle()
    handed: list[str] = []
    original = concurrent.futures.ThreadPoolExecutor.submit

    def spied(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if isinstance(self, request_threads.RequestThread):
            handed.append(getattr(getattr(fn, "func", fn), "__name__", "?"))  # a partial: its function
        return original(self, fn, *args, **kwargs)

    monkeypatch.setattr(concurrent.futures.ThreadPoolExecutor, "submit", spied)
    response = asyncio.run(call(app, url))
    assert response["status"] == 200, response
    return handed, wait_for_idle()


def wait_for_idle(seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if request_threads._idle:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize(
    ("on_first_call", "url", "handed"),
    [
        (True, "/stream", []),  # the stream gave its thread back unused: never woken
        (False, "/stream", ["run", "_close_connections", "int"]),  # receivers, the release, the park
        (True, "/async", ["_first_then", "int"]),  # the receivers ride response.close's hand-off
        (False, "/async", ["run", "thread_handler", "int"]),
        (True, "/state", ["_first_then", "thread_handler", "int"]),  # the receivers ride the view's hand-off
    ],
)
def test_on_first_call_a_request_wakes_its_thread_only_for_its_own_calls(
    settings: Any, monkeypatch: pytest.MonkeyPatch, on_first_call: bool, url: str, handed: list[str]
) -> None:
    settings.REQUEST_THREADS_REUSED = True
    settings.REQUEST_STARTED_DEFERRED = True
    settings.REQUEST_STARTED_ON_FIRST_CALL = on_first_call
    work, idle_again = request_thread_work(ASGIHandler(), url, monkeypatch)
    assert work == handed
    assert idle_again  # parked for the next request either way
