"""A streaming response gives back its request's thread-sensitive worker thread (or keeps it, switched off)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async

from rivya_api.common import request_thread
from rivya_api.common.request_thread import release_request_thread


def current_thread() -> threading.Thread:
    return threading.current_thread()


async def a_request(release: bool) -> tuple[threading.Thread, bool, threading.Thread]:
    """(the request's worker thread, what release said, the thread of a later call in the same request)."""
    async with ThreadSensitiveContext():
        first = await sync_to_async(current_thread)()
        released = release_request_thread() if release else False
        later = await sync_to_async(current_thread)()
    return first, released, later


@pytest.mark.parametrize("enabled", [True, False])
def test_the_request_thread_ends_when_released_and_a_later_call_gets_a_new_one(rivya_settings, enabled):
    rivya_settings("RIVYA_API", CHAT_STREAM_RELEASE_REQUEST_THREAD=enabled)
    first, released, later = asyncio.run(a_request(release=True))
    assert released is enabled
    first.join(timeout=5)
    if enabled:
        assert not first.is_alive()
        assert later is not first
        assert later.name.startswith("rivya-request-end")  # a shared pool's thread, not one started for it
        assert request_thread._ending.submit(lambda: 1).result() == 1  # not shut down at the request's end
        again = asyncio.run(a_request(release=True))[2]
        assert again.name.startswith("rivya-request-end")
    else:
        assert later is first  # Django's behaviour: one thread for the whole request


def test_outside_a_request_nothing_is_released(rivya_settings):
    rivya_settings("RIVYA_API", CHAT_STREAM_RELEASE_REQUEST_THREAD=True)

    async def outside() -> bool:
        return release_request_thread()

    assert asyncio.run(outside()) is False


@pytest.mark.django_db(transaction=True)
def test_a_released_thread_gives_its_database_connection_back(rivya_settings):
    from django.db import connections

    rivya_settings("RIVYA_API", CHAT_STREAM_RELEASE_REQUEST_THREAD=True)
    seen: dict[str, object] = {}

    def use_the_database() -> None:
        wrapper = connections["default"]  # this thread's
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        seen["wrapper"] = wrapper

    async def request() -> threading.Thread:
        async with ThreadSensitiveContext():
            thread = await sync_to_async(current_thread)()
            await sync_to_async(use_the_database)()
            assert release_request_thread()
        return thread

    thread = asyncio.run(request())
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert seen["wrapper"].connection is None  # closed in its thread before the thread ended


class LentThread(ThreadPoolExecutor):
    """An executor a host's handler lends the request and can take back early."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.released_after: list[str] = []

    def release_early(self) -> None:
        # The connections' close was queued first: it has run by the time this no-op does.
        self.released_after.append(self.submit(lambda: "after the close").result(timeout=5))


async def a_request_with(executor: ThreadPoolExecutor) -> tuple[threading.Thread, bool, threading.Thread]:
    async with ThreadSensitiveContext(executor=executor):
        first = await sync_to_async(current_thread)()
        released = release_request_thread()
        later = await sync_to_async(current_thread)()
    return first, released, later


def test_an_executor_the_host_lends_goes_back_to_it_early(rivya_settings):
    rivya_settings("RIVYA_API", CHAT_STREAM_RELEASE_REQUEST_THREAD=True)
    lent = LentThread()
    first, released, later = asyncio.run(a_request_with(lent))
    assert released
    assert lent.released_after == ["after the close"]
    assert later is not first
    assert later.name.startswith("rivya-request-end")
    lent.shutdown()


def test_an_executor_the_host_cannot_take_back_early_is_kept(rivya_settings):
    rivya_settings("RIVYA_API", CHAT_STREAM_RELEASE_REQUEST_THREAD=True)
    plain = ThreadPoolExecutor(max_workers=1)
    first, released, later = asyncio.run(a_request_with(plain))
    assert not released
    assert later is first
    plain.shutdown()
