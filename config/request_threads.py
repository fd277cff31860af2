"""One idle thread reused per request, rather than a new thread per request, under ASGI.

Django's ASGI handler gives every request its own ``ThreadSensitiveContext``:
the request's sync code (``request_started``'s receivers, a sync view, the
response's ``close`` with ``request_finished``) runs in a thread made for that
request, and a second thread is started to join it at the end. A chat turn paid
two thread starts for receivers that do next to nothing.

``ReusedRequestThreadsMixin`` hands each request a one-thread executor taken
from a pool of idle ones (``ThreadSensitiveContext(executor=…)``, asgiref ≥
3.13): still one thread per request in flight, never shared by two requests at
once, so thread-sensitive code sees what it saw before; the thread just
outlives the request. An executor goes back to the pool only once a no-op
submitted after the request has run, i.e. when whatever the request left in it
(a sync view still running after the server cancelled the request) has finished. What a
request may leave in its thread between requests is what Django's signals
clear anyway: ``request_started`` closes a leftover database connection.

Off: ``REQUEST_THREADS_REUSED = False`` (project setting, environment variable
of that name): Django's thread per request. ``tests/test_request_threads.py``
runs requests both ways.

A request that never runs sync code in its thread (an async view whose database work goes
through ``db_call``'s shared threads: a chat stream) still woke it three times: for
``request_started``'s receivers (``config.request_started``), to close its connections as the
stream started, and for the no-op before it is parked again. ``RequestThread.run_first`` keeps
those receivers until the lease's first call and hands them over with it, in one work item, so a
request that has no call never wakes its thread, has no connection there to close
(``ran_nothing``) and is parked at once. Off: ``REQUEST_STARTED_ON_FIRST_CALL = False`` (project
setting, environment variable of that name): the receivers are submitted at the request's start;
``tests/test_request_started.py`` runs requests both ways.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings

from config import request_started

MAX_IDLE = 64  # threads kept between requests; more concurrent requests start their own, as before
SUPPORTED = "executor" in inspect.signature(ThreadSensitiveContext).parameters
_idle: list[RequestThread] = []


def enabled() -> bool:
    return SUPPORTED and getattr(settings, "REQUEST_THREADS_REUSED", True)


class RequestThread(ThreadPoolExecutor):
    """A one-thread executor lent to one request at a time (``Lease``).

    A streaming response that needs its thread no more ends the lease early through
    ``release_early`` (called by ``rivya_api.common.request_thread``), so an open stream holds
    no idle thread; the request's end then finds the lease ended already.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="rivya-request")
        self.lease: Lease | None = None
        self.first: Callable[[], Any] | None = None  # the lease's request_started receivers, not run yet
        self.called = False  # the lease has submitted something

    def run_first(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` before the lease's first call, in the same work item; never if it makes none."""
        self.first = fn

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        self.called = True
        first, self.first = self.first, None
        if first is None:
            return super().submit(fn, *args, **kwargs)
        return super().submit(_first_then, first, fn, args, kwargs)

    def ran_nothing(self) -> bool:
        """The lease submitted nothing (``REQUEST_STARTED_ON_FIRST_CALL``): its thread holds none of its work."""
        return request_started.on_first_call() and not self.called

    def release_early(self) -> None:
        if self.lease is not None:
            self.lease.end()


def _first_then(first: Callable[[], Any], fn: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    first()
    return fn(*args, **kwargs)


class Lease:
    """One request's use of a ``RequestThread``; ending it twice gives the thread back once.

    Per request rather than a flag on the thread: a thread given back early may already be
    lent to another request when the first one ends.
    """

    def __init__(self, executor: RequestThread) -> None:
        self.executor, self.ended = executor, False
        executor.lease, executor.first, executor.called = self, None, False

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        executor = self.executor
        if executor.lease is self:
            executor.lease = None
            if executor.ran_nothing():  # idle since it was lent: no call to wait for
                executor.first = None
                _park(executor)
                return
        _park_when_idle(executor)


def _take() -> Lease:
    try:
        executor = _idle.pop()  # atomic under the GIL: safe from any loop's thread
    except IndexError:
        executor = RequestThread()
    return Lease(executor)


def _park(executor: RequestThread) -> None:
    if len(_idle) < MAX_IDLE:
        _idle.append(executor)
    else:
        executor.shutdown(wait=False)


def _park_when_idle(executor: RequestThread) -> None:
    # The callback runs in the executor's thread, once everything before the no-op has run.
    executor.submit(int).add_done_callback(lambda _: _park(executor))


class ReusedRequestThreadsMixin:
    """For Django's ``ASGIHandler`` (see the module docstring)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not enabled():
            return await super().__call__(scope, receive, send)  # type: ignore[misc]
        lease = _take()
        token = request_started.request_executor.set(lease.executor)  # config.request_started queues to it
        try:
            async with ThreadSensitiveContext(executor=lease.executor):
                await self.handle(scope, receive, send)  # type: ignore[attr-defined]
        finally:
            request_started.request_executor.reset(token)
            lease.end()
