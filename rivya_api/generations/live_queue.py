"""A worker process's live updates sent while its jobs go on: queued, in order, on the worker loop.

With ``LIVE_WORKER_LOOP`` each live update still held its job until Redis had answered the group
send: two a job (running, then its end), about 8 % of a no-op job's time. Here ``put`` hands the
message to one coroutine on the process's worker loop (``live._WorkerLoop``), which sends the
messages one after another in the order they were put (a task's "running" never arrives after its
end), each under the send timeout, a failure logged as before (live updates are best effort; the
task's state is committed). Nothing is dropped for being queued:

* when more than ``MAX_PENDING`` wait (Redis slow or gone), ``put`` waits, up to the send timeout,
  for the queue to empty, so the backlog does not grow without bound;
* ``drain`` waits (up to ``DRAIN_SECONDS``) for what is queued: at the end of a prefork child
  (``worker_process_shutdown``) and at the interpreter's exit.

``RIVYA_API["LIVE_UPDATES_QUEUED"] = False``: each send waits for Redis, as before.
``tests/rivya_api/generations/test_live_loop.py`` runs the sends both ways.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from typing import Any

logger = logging.getLogger("rivya_api.generations.live")

MAX_PENDING = 1000
DRAIN_SECONDS = 10.0

_lock = threading.Lock()


class _State:
    """This process's queue (after a fork: a new one) and how many of its messages are not sent yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.pid = os.getpid()
        self.loop = loop
        self.queue: asyncio.Queue[tuple[Any, str, dict[str, Any]]] = asyncio.Queue()
        self.pending = 0
        self.idle = threading.Event()
        self.idle.set()
        asyncio.run_coroutine_threadsafe(_consume(self, timeout), loop)


_state: _State | None = None


def put(loop: asyncio.AbstractEventLoop, layer: Any, group: str, message: dict[str, Any], *, timeout: float) -> None:
    """Queue ``layer.group_send(group, message)`` on ``loop``, after every message queued before it."""
    global _state
    with _lock:
        state = _state
        if state is None or state.pid != os.getpid() or state.loop is not loop:
            state = _state = _State(loop, timeout)
        state.pending += 1
        state.idle.clear()
        backlog = state.pending > MAX_PENDING
    loop.call_soon_threadsafe(state.queue.put_nowait, (layer, group, message))
    if backlog:
        state.idle.wait(timeout)


async def _consume(state: _State, timeout: float) -> None:
    while True:
        layer, group, message = await state.queue.get()
        try:
            await asyncio.wait_for(layer.group_send(group, message), timeout)
        except Exception:  # live updates are best effort; the task state is already committed
            logger.warning("Could not push a live update to %s", group, exc_info=True)
        finally:
            with _lock:
                state.pending -= 1
                if not state.pending:
                    state.idle.set()


def drain(**_: Any) -> bool:
    """Wait for this process's queued messages to be sent (at most ``DRAIN_SECONDS``); True: none left."""
    state = _state
    if state is None or state.pid != os.getpid():
        return True
    return state.idle.wait(DRAIN_SECONDS)


atexit.register(drain)
