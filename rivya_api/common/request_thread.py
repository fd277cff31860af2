"""Give back the worker thread Django keeps for a request once a long-lived response is streaming.

Django's ASGI handler runs every request in asgiref's ``ThreadSensitiveContext``: the first
thread-sensitive ``sync_to_async`` call of the request (``request_started``'s receivers, at
least) starts a one-thread executor that the context keeps until the response has ended. For a
chat stream that is one idle thread per open stream: its stack and interpreter state were a
good part of the memory per open stream (300 open streams, 303 threads). ``release_request_thread``,
called as a stream's body starts, closes that thread's database connections there (a pooled
connection goes back to its pool; one inside a transaction is left alone) and lets it exit.
A later thread-sensitive call of the same request (closing the response, at its end) gets a
new thread, which the context stops as before.

This reaches into asgiref (``SyncToAsync.context_to_thread_executor``), so it has its own
switch: ``RIVYA_API["CHAT_STREAM_RELEASE_REQUEST_THREAD"] = False`` keeps the thread.
``tests/rivya_api/test_request_thread.py`` checks both ways.
"""

from __future__ import annotations

from asgiref.sync import SyncToAsync
from django.db import connections

from rivya_api.conf import api_settings


def _close_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


def release_request_thread() -> bool:
    """Let the current request's thread-sensitive worker thread end; True if there was one."""
    if not api_settings.CHAT_STREAM_RELEASE_REQUEST_THREAD:
        return False
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return False  # no request context, or one whose executor its caller owns
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is None:
        return False
    executor.submit(_close_connections)
    executor.shutdown(wait=False)  # the thread ends after that call; nothing here waits for it
    return True
