"""An in-memory channel layer that other threads can send to: the embedded default's layer.

Without ``REDIS_URL`` the web process runs generations in its own worker
threads (``rivya_api.background``), and their status changes are sent to the
channel layer from there (``async_to_sync(group_send)`` in a fresh event loop).
Channels' ``InMemoryChannelLayer`` keeps one ``asyncio.Queue`` per channel,
which is not thread-safe: a message put from another loop wakes the waiting
consumer only when its loop happens to wake up for something else, so the
update may sit there for as long as nothing else happens. This layer remembers
the loop each channel is received on and hands sends from any other loop over
to it with ``run_coroutine_threadsafe``. Within one process only, like its parent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer


class ThreadSafeInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Channel name -> the event loop its consumer receives on.
        self._home_loops: dict[str, asyncio.AbstractEventLoop] = {}

    async def send(self, channel: str, message: dict) -> None:
        home = self._home_loops.get(channel)
        if home is not None and home is not asyncio.get_running_loop():
            if home.is_closed():
                self._home_loops.pop(channel, None)
            else:
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(super().send(channel, message), home))
                return
        await super().send(channel, message)

    async def receive(self, channel: str) -> dict:
        self._home_loops[channel] = asyncio.get_running_loop()
        return await super().receive(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        if not any(channel in members for members in self.groups.values()):
            self._home_loops.pop(channel, None)

    async def flush(self) -> None:
        await super().flush()
        self._home_loops = {}
