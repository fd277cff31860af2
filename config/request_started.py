"""Django's database receivers of ``request_started`` queued to the request's thread, not awaited.

Django's ASGI handler awaits ``request_started.asend`` before it makes the request. Its sync
receivers, by default only Django's own ``reset_queries`` and ``close_old_connections`` (which
tidy the database connections of the thread the request's sync code will run in), run through
``sync_to_async`` in the request's thread while the event loop waits: a round trip to a thread
and back, about 0.1 ms of CPU, and a thread wake-up before every response's first byte (a chat
turn's too, though its own database work runs in other threads).

Under ``config.request_threads`` that thread is a one-thread executor, which runs what it is
given in order. Submitted there without waiting, the receivers still run in that thread before
any sync code of the request (a sync view, a session's load, ``response.close`` with
``request_finished``), and the event loop goes on with the request at once. Nothing on the event
loop can touch those connections (Django refuses database calls there).

Deferred only when every receiver is one of Django's two and the request is served by
``config.middleware.ASGIHandler`` in a reused request thread; a host's own receiver, sync or
async, gets Django's ``asend``, awaited, as before. What differs: an error from those receivers
(a connection that fails to close) is logged (``django.request``) instead of failing the request.

What it reaches into: ``Signal._live_receivers`` (Django's, not public), and the ``request_started``
signal object gets an ``asend`` of its own (``install``), which defers as above for the requests of
this handler and otherwise calls ``Signal.asend``. ``REQUEST_STARTED_DEFERRED = False`` (project
setting, environment variable of that name): Django's ``asend`` for every request;
``tests/test_request_started.py`` runs requests both ways.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from concurrent.futures import Executor
from typing import Any

from django.conf import settings
from django.core import signals
from django.db import close_old_connections, reset_queries
from django.dispatch import Signal

logger = logging.getLogger("django.request")

DEFERRABLE = frozenset({close_old_connections, reset_queries})
# The request's one-thread executor, set by config.request_threads around the handler's ``handle``.
request_executor: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("request_executor", default=None)


def enabled() -> bool:
    return getattr(settings, "REQUEST_STARTED_DEFERRED", True)


def on_first_call() -> bool:
    """``REQUEST_STARTED_ON_FIRST_CALL``, read here only (``config.request_threads`` asks this too)."""
    return getattr(settings, "REQUEST_STARTED_ON_FIRST_CALL", True)


def _run(receivers: list[Any], sender: Any, named: dict[str, Any]) -> None:
    for receiver in receivers:
        try:
            receiver(signal=signals.request_started, sender=sender, **named)
        except Exception:
            logger.exception("A request_started receiver failed: %r", receiver)


async def asend(sender: Any, **named: Any) -> list[tuple[Any, Any]]:
    """``request_started.asend``: the receivers queued to the request's thread where allowed, else Django's."""
    signal = signals.request_started
    executor = request_executor.get()
    if executor is not None and enabled():
        sync_receivers, async_receivers = signal._live_receivers(sender)
        if not async_receivers and all(receiver in DEFERRABLE for receiver in sync_receivers):
            # In the request's context (its contextvars); with the request thread's first call if
            # it can wait for one (config.request_threads, REQUEST_STARTED_ON_FIRST_CALL).
            call = functools.partial(contextvars.copy_context().run, _run, sync_receivers, sender, named)
            run_first = getattr(executor, "run_first", None)
            if run_first is not None and on_first_call():
                run_first(call)
            else:
                executor.submit(call)
            return [(receiver, None) for receiver in sync_receivers]
    return await Signal.asend(signal, sender, **named)


def install() -> None:
    """Give the ``request_started`` signal object this module's ``asend`` (once; idempotent)."""
    signals.request_started.asend = asend
