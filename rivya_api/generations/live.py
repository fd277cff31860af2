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
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
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
            _WorkerLoop.run(layer.group_send(account_group(account_id), message))
        else:
            async_to_sync(layer.group_send)(account_group(account_id), message)
    except Exception:  # live updates are best effort; the task state is already committed
        logger.warning("Could not push a live update for account %s", account_id, exc_info=True)


_worker_loop_pid: int | None = None
SEND_TIMEOUT = 5.0


def worker_loop_enable(**_: Any) -> None:
    """Send this process's live updates through one long-lived loop (a Celery worker process)."""
    global _worker_loop_pid
    _worker_loop_pid = os.getpid()


class _WorkerLoop:
    """One event loop in a daemon thread, started on first use (after any fork: per process)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None

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
            return cls._loop
