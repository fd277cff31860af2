"""Requests' sync code in reused threads (``config.request_threads``) against Django's thread per request.

Requests go through the project's ASGI handler (``config.middleware.ASGIHandler``), as uvicorn sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from typing import Any

import pytest
from django.http import JsonResponse
from django.urls import path

from config import request_threads
from config.middleware import ASGIHandler

pytestmark = pytest.mark.urls("tests.test_request_threads")


_threads = threading.local()
_serials = itertools.count(1)


def thread_serial() -> int:
    """This thread's number: unlike its ident, never given to a later thread."""
    if not hasattr(_threads, "serial"):
        _threads.serial = next(_serials)
    return _threads.serial


def ident(request: Any) -> JsonResponse:
    return JsonResponse({"thread": thread_serial()})


def slow(request: Any) -> JsonResponse:
    time.sleep(float(request.GET.get("seconds", "0.2")))
    return JsonResponse({"thread": thread_serial()})


urlpatterns = [path("ident", ident), path("slow", slow)]


async def call(app: Any, url: str) -> dict[str, Any]:
    path_, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_,
        "raw_path": path_.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent = asyncio.Event()
    messages: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            sent.set()

    await app(scope, receive, send)
    starts = [m for m in messages if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return {"status": starts[0]["status"] if starts else None, "body": body}


def thread_of(response: dict[str, Any]) -> int:
    assert response["status"] == 200, response
    return int(response["body"].split(b":")[1].strip(b" }"))


@pytest.mark.parametrize("reused", [True, False])
def test_one_request_after_another_reuses_a_thread_only_when_switched_on(settings: Any, reused: bool) -> None:
    settings.REQUEST_THREADS_REUSED = reused
    app = ASGIHandler()

    async def two() -> tuple[int, int]:
        first = thread_of(await call(app, "/ident"))
        await asyncio.sleep(0.05)  # the first request's thread is back in the pool
        return first, thread_of(await call(app, "/ident"))

    first, second = asyncio.run(two())
    assert (first == second) is reused


def test_requests_in_flight_together_never_share_a_thread(settings: Any) -> None:
    settings.REQUEST_THREADS_REUSED = True
    app = ASGIHandler()

    async def together() -> list[int]:
        return [thread_of(r) for r in await asyncio.gather(*(call(app, "/slow?seconds=0.2") for _ in range(4)))]

    assert len(set(asyncio.run(together()))) == 4


def test_a_thread_still_running_a_cancelled_request_is_not_handed_to_the_next(settings: Any) -> None:
    settings.REQUEST_THREADS_REUSED = True
    app = ASGIHandler()
    request_threads._idle.clear()

    async def cancelled_then_next() -> float:
        # The server cancels a request (as at shutdown) whose view goes on sleeping in its thread.
        left = asyncio.create_task(call(app, "/slow?seconds=0.5"))
        await asyncio.sleep(0.15)
        left.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await left
        began = time.perf_counter()
        thread_of(await call(app, "/ident"))
        return time.perf_counter() - began

    assert asyncio.run(cancelled_then_next()) < 0.3  # not queued behind the cancelled request's view
    time.sleep(0.6)
    assert request_threads._idle  # once the view is done, its thread is back in the pool


def wait_until(condition: Any, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_thread_released_early_and_lent_again_stays_with_its_new_request() -> None:
    request_threads._idle.clear()
    first = request_threads._take()
    first.executor.release_early()  # a stream gave it back while its request goes on
    assert wait_until(lambda: first.executor in request_threads._idle)
    second = request_threads._take()
    assert second.executor is first.executor
    first.end()  # the stream's request ends while the thread serves the second request
    time.sleep(0.1)
    assert first.executor not in request_threads._idle
    second.end()
    assert wait_until(lambda: second.executor in request_threads._idle)
    request_threads._idle.clear()
