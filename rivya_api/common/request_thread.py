"""Give back the worker thread Django keeps for a request once a long-lived response is streaming.

Django's ASGI handler runs every request in asgiref's ``ThreadSensitiveContext``: the first
thread-sensitive ``sync_to_async`` call of the request (``request_started``'s receivers, at
least) starts a one-thread executor that the context keeps until the response has ended. For a
chat stream that is one idle thread per open stream: its stack and interpreter state were a
good part of the memory per open stream (300 open streams, 303 threads). ``release_request_thread``,
called as a stream's body starts, closes that thread's database connections there (a pooled
connection goes back to its pool; one inside a transaction is left alone) and lets it exit.
A later thread-sensitive call of the same request (closing the response, at its end) runs in
a small pool this module keeps for that, rather than on a new thread started for it (about
0.2 ms of CPU a turn).

A host's ASGI handler may give each request an executor of its own
(``ThreadSensitiveContext(executor=…)``, as the reference project's ``config.request_threads``
does to reuse threads): such an executor is handed back early through its ``release_early()``
method, if it has one, and is otherwise kept until the request ends; one whose ``ran_nothing()``
says the request has not used its thread is not woken to close connections it cannot hold.

This reaches into asgiref (``SyncToAsync.context_to_thread_executor``), so it has its own
switch: ``RIVYA_API["CHAT_STREAM_RELEASE_REQUEST_THREAD"] = False`` keeps the thread.
``tests/rivya_api/test_request_thread.py`` checks both ways.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import connections

from rivya_api.conf import api_settings


def _close_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()


# Where released requests' last calls run: closing a response and its request_finished receivers.
_ending = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rivya-request-end")


class _SharedThread(Executor):
    """The released request's executor from then on: the shared ``_ending`` pool.

    The request's context shuts its executor down when the request ends; the pool is not
    this request's to stop, so ``shutdown`` does nothing.
    """

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        return _ending.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass


def release_request_thread() -> bool:
    """Let the current request's thread-sensitive worker thread end; True if there was one."""
    if not api_settings.CHAT_STREAM_RELEASE_REQUEST_THREAD:
        return False
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None:
        return False
    executor = SyncToAsync.context_to_thread_executor.get(context)
    if executor is None or isinstance(executor, _SharedThread):
        return False
    owned = getattr(context, "_executor", None) is not None  # the caller's, not the context's
    if owned and not callable(getattr(executor, "release_early", None)):
        return False  # its owner cannot take it back before the request ends
    SyncToAsync.context_to_thread_executor[context] = _SharedThread()
    ran_nothing = getattr(executor, "ran_nothing", None)
    if not (owned and ran_nothing is not None and ran_nothing()):  # else no connection of it is there
        executor.submit(_close_connections)
    if owned:
        executor.release_early()  # queued behind the close: its owner lends it on after that
    else:
        executor.shutdown(wait=False)  # the thread ends after that call; nothing here waits for it
    return True
