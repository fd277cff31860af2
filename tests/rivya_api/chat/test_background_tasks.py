"""The chat's long-lived Redis tasks (the cancel listener, the event mirror) end when they are cancelled.

An event loop's shutdown cancels every task and waits for them all (``asyncio.run``,
which ``async_to_sync`` uses for each non-streaming turn under WSGI and under the
test client): a task that does not end hangs the request for good.

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives as its
inner operation completes (CPython gh-86296), and redis-py sends every command
through it when a ``socket_timeout`` is set. These tests make that moment happen
on purpose: the Redis command is held until the test cancels the task and lets the
command finish in the same turn of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from redis.asyncio.connection import AbstractConnection

from rivya_api.chat import streams
from rivya_api.chat.turns import TurnEventLog

pytestmark = pytest.mark.redis

# Far above the few milliseconds a cancelled task takes to end: reaching it means the task did not end.
HUNG_AFTER_SECONDS = 10


class HeldCommand:
    """Holds the first Redis command containing ``marker`` until ``finish_as_cancelled`` lets it go."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.sent = asyncio.Event()
        self.release = asyncio.Event()
        self.held = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = AbstractConnection._send_packed_command
        holder = self

        async def send(connection: AbstractConnection, command: list[bytes]) -> None:
            if not holder.held and any(holder.marker in part for part in command):
                holder.held = True
                holder.sent.set()
                await holder.release.wait()
            await original(connection, command)

        AbstractConnection._send_packed_command = send  # type: ignore[method-assign]
        try:
            yield
        finally:
            AbstractConnection._send_packed_command = original  # type: ignore[method-assign]

    async def finish_as_cancelled(self, task: asyncio.Task) -> None:
        """Cancel ``task`` while its command completes: both are ready in the same turn of the loop."""
        await self.sent.wait()
        self.release.set()  # the command's own task runs first and completes...
        task.cancel()  # ...and then the cancelled ``wait_for`` finds it done


async def ended(task: asyncio.Task) -> bool:
    done, _ = await asyncio.wait([task], timeout=HUNG_AFTER_SECONDS)
    return task in done


def test_the_cancel_listener_ends_when_cancelled_as_it_subscribes():
    held = HeldCommand(b"SUBSCRIBE")

    async def run() -> tuple[bool, bool]:
        listener = asyncio.get_running_loop().create_task(streams._listen_for_cancels())
        try:
            await held.finish_as_cancelled(listener)
            return await ended(listener), listener.cancelled()
        finally:
            listener.cancel()  # a listener that did not end must not hang this test's asyncio.run too
            await streams.redis_client().aclose()

    with held.installed():
        finished, cancelled = asyncio.run(run())
    assert held.held
    assert finished, "the cancel listener ignored its cancellation and went on listening"
    assert cancelled


def test_the_event_mirror_ends_when_cancelled_as_it_writes():
    """Cancelled mid-turn (the loop shuts down), the mirror ends now, not when the turn's log closes."""
    plan = SimpleNamespace(turn_id=f"turn_mirror_cancel_{time.time_ns()}", session_id="chat_mirror_cancel")
    turn = SimpleNamespace(plan=plan, log=TurnEventLog())
    held = HeldCommand(b"XADD")

    async def run() -> tuple[bool, bool]:
        mirror = asyncio.get_running_loop().create_task(streams.mirror_to_redis(turn))
        try:
            await held.finish_as_cancelled(mirror)
            return await ended(mirror), mirror.cancelled()
        finally:
            turn.log.close()  # a mirror that did not end must not hang this test's asyncio.run too
            await asyncio.wait([mirror])
            client = streams.redis_client()
            await client.delete(streams.turn_key(plan.turn_id), streams.session_key(plan.session_id))
            await client.delete(streams.alive_key(plan.turn_id))
            await client.aclose()

    with held.installed():
        finished, cancelled = asyncio.run(run())
    assert held.held
    assert finished, "the event mirror ignored its cancellation and went on following the turn"
    assert cancelled


def test_the_cancel_listener_stops_the_turn_another_process_names():
    """``request_cancel`` in a process that does not run the turn publishes it; the listener here stops it."""
    turn_id = f"turn_cancel_elsewhere_{time.time_ns()}"

    async def run() -> bool:
        cancelled = asyncio.Event()
        turn = SimpleNamespace(plan=SimpleNamespace(turn_id=turn_id, session_id="chat_cancel_elsewhere"))
        turn.cancel = cancelled.set
        listener = asyncio.get_running_loop().create_task(streams._listen_for_cancels())
        client = streams.redis_client()
        streams.local_turns.add(turn)
        try:
            # Published again until it lands: the listener may not have subscribed yet (and PUBLISH's
            # count cannot tell, since other processes on this Redis may listen on the channel too).
            async with asyncio.timeout(HUNG_AFTER_SECONDS):
                while not cancelled.is_set():
                    await client.publish(streams.CANCEL_CHANNEL, turn_id)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.05):
                            await cancelled.wait()
            listener.cancel()
            return await ended(listener)
        finally:
            streams.local_turns._drop(turn)
            listener.cancel()
            await client.aclose()

    assert asyncio.run(run())


def test_a_burst_beyond_the_pool_waits_for_a_connection_instead_of_failing(rivya_settings):
    """More commands in flight than the pool has connections: each waits its turn (redis-py's
    default pool raised MaxConnectionsError, and a burst of turns lost their mirrored events)."""
    rivya_settings("RIVYA_API", CHAT_STREAM_REDIS_MAX_CONNECTIONS=2, CHAT_STREAM_REDIS_POOL_WAIT_SECONDS=30)
    key = f"rivya:test:empty:{time.time_ns()}"

    async def run() -> list[object]:
        client = streams.redis_client()
        try:
            # Each BLPOP on an empty list holds its connection for 0.1 s.
            return await asyncio.gather(*(client.blpop([key], timeout=0.1) for _ in range(8)), return_exceptions=True)
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [None] * 8
