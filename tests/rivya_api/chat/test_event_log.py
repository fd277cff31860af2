"""A turn's event log and its SSE body: waiting, waking, keep-alives, and several waiting events in one send."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rivya_api.chat.sse import event_stream
from rivya_api.chat.turns import TurnEventLog


def sse_events(body: bytes) -> list[tuple[str, str]]:
    blocks = [block for block in body.decode().split("\n\n") if block]
    return [tuple(line.split(": ", 1)[1] for line in block.split("\n")) for block in blocks]


def test_a_follower_behind_gets_the_waiting_events_in_one_send_each_its_own_sse_event(rivya_settings):
    rivya_settings("RIVYA_API", CHAT_KEEPALIVE_SECONDS=5)
    turn = SimpleNamespace(log=TurnEventLog())

    async def run() -> list[bytes]:
        for n in range(3):
            turn.log.append(f'{{"n":{n}}}')
        body = event_stream(turn, after=1)
        sends = [await body.__anext__()]  # events 2 and 3 were waiting: one send
        follower = asyncio.ensure_future(body.__anext__())
        await asyncio.sleep(0)
        turn.log.append('{"n":3}')  # the follower keeps up: one event, one send
        sends.append(await follower)
        turn.log.append("[DONE]")
        turn.log.close()
        sends += [part async for part in body]
        return sends

    sends = asyncio.run(run())
    assert [sse_events(send) for send in sends] == [
        [("2", '{"n":1}'), ("3", '{"n":2}')],
        [("4", '{"n":3}')],
        [("5", "[DONE]")],
    ]


def test_waiting_for_a_change_wakes_on_append_and_close_and_times_out():
    log = TurnEventLog()

    async def run() -> list[object]:
        results = []
        appended = asyncio.ensure_future(log.wait_for_change(5))
        also = asyncio.ensure_future(log.wait_for_change(None))
        await asyncio.sleep(0)
        log.append("x")
        results += [await appended, await also]
        results.append(await log.wait_for_change(0.01))  # nothing happens: False
        cancelled = asyncio.ensure_future(log.wait_for_change(5))
        await asyncio.sleep(0)
        cancelled.cancel()
        closed = asyncio.ensure_future(log.wait_for_change(5))
        await asyncio.sleep(0)
        log.close()  # a cancelled waiter does not stop the others from waking
        results.append(await closed)
        return results

    assert asyncio.run(run()) == [True, True, False, True]


def test_a_silent_log_yields_keep_alives(rivya_settings):
    rivya_settings("RIVYA_API", CHAT_KEEPALIVE_SECONDS=0.02)
    turn = SimpleNamespace(log=TurnEventLog())

    async def run() -> list[bytes]:
        body = event_stream(turn)
        parts = [await body.__anext__(), await body.__anext__()]
        turn.log.close()
        return parts + [part async for part in body]

    assert asyncio.run(run()) == [b": keep-alive\n\n", b": keep-alive\n\n"]
