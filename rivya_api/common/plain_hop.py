"""``db_call``'s hand-off to a worker thread without asgiref's ``SyncToAsync`` around it.

``sync_to_async(fn, thread_sensitive=False)`` is built anew for every call (an object, its
``update_wrapper``, two partials and two closures) and awaits the executor's future through
``asyncio.shield``: about 20 µs of the event loop's CPU a call, three calls a chat turn. What a
call needs of it is kept, in the same order:

- the caller's context (``contextvars.copy_context()``) is the call's, and asgiref's
  ``_restore_context`` moves it onto the worker thread (asgiref ``Local`` storage re-homed,
  so Django's caches and translations are the request's) and, once the call has ended, back
  into the caller's (what the call set is seen after it, as with asgiref);
- ``SyncToAsync.threadlocal`` names the caller's loop, so an ``async_to_sync`` inside the call
  runs its coroutine on that loop;
- the loop's default executor runs it; a cancelled caller stops waiting at once while the call
  runs to its end (asgiref's behaviour when nothing async runs under the call).

A caller inside an ``except`` block (asgiref re-raises its exception in the worker, so the
call's own errors chain to it) gets asgiref. Reaches into asgiref (``_restore_context``,
``SyncToAsync.threadlocal``): ``RIVYA_API["DB_CALL_PLAIN_HOP"] = False`` is asgiref for every
call; ``tests/rivya_api/test_plain_hop.py`` runs calls both ways.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, _restore_context

T = TypeVar("T")


def _in_thread(loop: asyncio.AbstractEventLoop, context: contextvars.Context, fn: Callable[..., T], args: tuple) -> T:
    threadlocal = SyncToAsync.threadlocal
    threadlocal.main_event_loop = loop  # as SyncToAsync.thread_handler: for async_to_sync inside the call
    threadlocal.main_event_loop_pid = os.getpid()
    threadlocal.task_context = []
    return context.run(_restored_call, context, fn, args)


def _restored_call(context: contextvars.Context, fn: Callable[..., T], args: tuple) -> T:
    _restore_context(context)
    return fn(*args)


def usable() -> bool:
    """False where asgiref must make the call (see the module docstring)."""
    return sys.exc_info()[1] is None


async def call(fn: Callable[..., T], *args: Any) -> T:
    """``await sync_to_async(fn, thread_sensitive=False)(*args)``, with less of the event loop's time."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    try:
        return await loop.run_in_executor(None, _in_thread, loop, context, fn, args)
    finally:
        _restore_context(context)
