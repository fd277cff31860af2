"""Live task updates: status changes are pushed to the account's browsers after commit.

The group name is per account; the Channels consumer of the settings pages joins
it for the logged-in user's account. Sending happens on commit, so a browser
never sees a state that was rolled back. The same moment sends the
``rivya_api.signals.generation_updated`` signal for the host's own receivers.
Channels is optional (the ``channels`` extra): without it only the signal is sent.

In a Celery worker process (``worker_loop_enable``, from ``worker_process_init``) the
sends go through one event loop that lives as long as the process: ``async_to_sync``
would start a new loop for every send, and the Redis channel layer a new connection
with it (about half of a no-op job's CPU went there). ``RIVYA_API["LIVE_WORKER_LOOP"]``
False keeps ``async_to_sync``.

There a job's thread does not wait for its sends either (``RIVYA_API["LIVE_WORKER_NO_WAIT"]``):
each goes onto the loop's queue, sent one after another in the order queued (so an account's
"running" never overtakes its "succeeded"), each within ``SEND_TIMEOUT``, a failed one logged and
the next sent. Waiting for the channel layer's Redis round trips took about a quarter of a no-op
job's time in the worker. At most ``QUEUE_LIMIT`` sends wait: when a stalled Redis lets more pile
up, one is dropped (an update a later one of the same task supersedes, else the oldest), logged with
the count so far (``_WorkerLoop.dropped``); a worker process flushes its queue as it shuts down
(``worker_process_shutdown``, up to ``SEND_TIMEOUT``). The ``generation_updated`` signal is still
sent on the job's thread. False: the job's thread waits for each send.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction

from rivya_api.conf import api_settings

logger = logging.getLogger(__name__)


def account_group(account_id: Any) -> str:
    return f"rivya.account.{account_id}"


def generation_notify_on_commit(account_id: Any, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: _notify(account_id, payload))


def _notify(account_id: Any, payload: dict[str, Any]) -> None:
    from rivya_api.generations.models import GenerationTask
    from rivya_api.signals import generation_updated

    for receiver, result in generation_updated.send_robust(GenerationTask, account_id=account_id, task=payload):
        if isinstance(result, Exception):
            logger.error("generation_updated receiver %r failed", receiver, exc_info=result)
    _send(account_id, payload)


def _send(account_id: Any, payload: dict[str, Any]) -> None:
    try:
        from channels.layers import get_channel_layer
    except ImportError:  # live updates need the channels extra; the pages poll without it
        return
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "generation.update", "task": payload}
    try:
        if _worker_loop_pid == os.getpid() and api_settings.LIVE_WORKER_LOOP:
            if api_settings.LIVE_WORKER_NO_WAIT:
                _WorkerLoop.post(layer, account_group(account_id), message)
            else:
                _WorkerLoop.run(layer.group_send(account_group(account_id), message))
        else:
            async_to_sync(layer.group_send)(account_group(account_id), message)
    except Exception:  # live updates are best effort; the task state is already committed
        logger.warning("Could not push a live update for account %s", account_id, exc_info=True)


_worker_loop_pid: int | None = None
SEND_TIMEOUT = 5.0
QUEUE_LIMIT = 1000


def worker_loop_enable(**_: Any) -> None:
    """Send this process's live updates through one long-lived loop (a Celery worker process)."""
    global _worker_loop_pid
    _worker_loop_pid = os.getpid()


class _WorkerLoop:
    """One event loop in a daemon thread, started on first use (after any fork: per process)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None
    _queue: collections.deque[tuple[Any, str, dict[str, Any]]] = collections.deque()  # used on the loop only
    _sender: asyncio.Task[None] | None = None
    dropped = 0  # updates dropped from a full queue, for the whole process

    @classmethod
    def run(cls, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, cls._get())
        try:
            return future.result(SEND_TIMEOUT)
        except TimeoutError:
            future.cancel()  # or it keeps running on the loop, one more with each stalled send
            raise

    @classmethod
    def _get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="rivya-live-updates", daemon=True).start()
                cls._loop, cls._pid = loop, os.getpid()
                cls._queue, cls._sender = collections.deque(), None  # the parent's, if forked
            return cls._loop

    @classmethod
    def post(cls, layer: Any, group: str, message: dict[str, Any]) -> None:
        """Queue ``layer.group_send(group, message)`` on the loop, after those queued before; no wait."""
        cls._get().call_soon_threadsafe(cls._enqueue, layer, group, message)

    @classmethod
    def _enqueue(cls, layer: Any, group: str, message: dict[str, Any]) -> None:  # on the loop
        cls._queue.append((layer, group, message))
        if len(cls._queue) > QUEUE_LIMIT:
            cls._drop_one()
        if cls._sender is None or cls._sender.done():
            cls._sender = asyncio.get_running_loop().create_task(cls._send_queued())

    @classmethod
    def _drop_one(cls) -> None:
        """Drop an update a later one of the same task supersedes, else the oldest; logged and counted."""
        seen: set[tuple[str, Any]] = set()
        for index in range(len(cls._queue) - 1, -1, -1):
            _, group, message = cls._queue[index]
            key = (group, (message.get("task") or {}).get("id"))
            if key[1] is not None and key in seen:
                del cls._queue[index]
                break
            seen.add(key)
        else:
            cls._queue.popleft()
        cls.dropped += 1
        logger.warning("Live updates pile up (%s waiting): one dropped, %s dropped so far", QUEUE_LIMIT, cls.dropped)

    @classmethod
    async def _send_queued(cls) -> None:
        while cls._queue:
            layer, group, message = cls._queue.popleft()
            try:
                await asyncio.wait_for(layer.group_send(group, message), SEND_TIMEOUT)
            except Exception:  # best effort, as a waited send: the next one goes on
                logger.warning("Could not push a live update to %s", group, exc_info=True)

    @classmethod
    def flush(cls, timeout: float = SEND_TIMEOUT) -> bool:
        """Wait until the queued sends are done (or ``timeout``); whether they are."""
        loop = cls._loop
        if loop is None or cls._pid != os.getpid():
            return True
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            idle = asyncio.run_coroutine_threadsafe(cls._idle(), loop).result(timeout)
            if idle:
                return True
            time.sleep(0.01)
        return False

    @classmethod
    async def _idle(cls) -> bool:
        return not cls._queue and (cls._sender is None or cls._sender.done())


def worker_loop_flush(**_: Any) -> None:
    """A worker process shutting down: send what is queued first (``worker_process_shutdown``)."""
    if _worker_loop_pid == os.getpid() and not _WorkerLoop.flush():
        logger.warning("Live updates still queued at shutdown were not sent")
