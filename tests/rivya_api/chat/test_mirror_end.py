"""A turn's last events reach Redis even when its loop closes right after the turn.

``async_to_sync`` runs each non-streaming turn under WSGI and the test client in a loop of its
own (``asyncio.run``), which cancels every task left when the turn returns; a worker's shutdown
does the same. The mirror's writer gathers events for ``CHAT_STREAM_MIRROR_GATHER_SECONDS``
before it writes: without the end of the turn waiting for it, the finish chunk, the usage chunk
and ``[DONE]`` were cancelled on their way, and a follower in another process ended a
successful turn as interrupted.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import pytest
import redis

from rivya_api.chat import streams
from rivya_api.chat.turns import ChatTurn, TurnEventLog

pytestmark = pytest.mark.redis


def run_a_turn_whose_loop_closes_at_its_end(settings, gather: float) -> tuple[list[tuple[str, str]], list, bool, float]:
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_STREAM_MIRROR_GATHER_SECONDS": gather}
    plan = SimpleNamespace(turn_id=f"turn_mirror_end_{time.time_ns()}", session_id=f"chat_mirror_end_{time.time_ns()}")
    turn = SimpleNamespace(plan=plan, log=TurnEventLog(), mirror=None)

    async def main() -> float:
        turn.mirror = asyncio.get_running_loop().create_task(streams.mirror_to_redis(turn))
        await asyncio.sleep(0.05)  # the model's first token
        for index in range(5):
            turn.log.append(json.dumps({"n": index}))
            await asyncio.sleep(0.001)
        turn.log.append("[DONE]")
        turn.log.close()
        closed = time.monotonic()
        await ChatTurn._wait_for_mirror(turn)  # the end of ChatTurn._run
        return time.monotonic() - closed
        # the turn returns here; asyncio.run cancels whatever is left

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        drained = asyncio.run(main())
        entries = [(entry_id, fields["d"]) for entry_id, fields in client.xrange(streams.turn_key(plan.turn_id))]
        alive = bool(client.exists(streams.alive_key(plan.turn_id)))
    finally:
        client.delete(streams.turn_key(plan.turn_id), streams.session_key(plan.session_id))
        client.delete(streams.alive_key(plan.turn_id))
        client.close()
    return entries, turn.log.events, alive, drained


@pytest.mark.parametrize("gather", [0, 0.01])
def test_every_event_reaches_redis_when_the_loop_closes_at_the_turns_end(settings, gather):
    for _ in range(3):
        entries, events, alive, _ = run_a_turn_whose_loop_closes_at_its_end(settings, gather)
        assert entries == [("0-1", ": started"), *[(f"{event.id}-1", event.data) for event in events]]
        assert entries[-1][1] == "[DONE]"
        assert not alive  # the mirror ended the stream: followers do not wait for the alive key to lapse


def test_a_closed_logs_last_events_do_not_wait_for_the_gather(settings):
    """The gather is for events that more may join; nothing follows a closed log's last ones."""
    entries, events, _, drained = run_a_turn_whose_loop_closes_at_its_end(settings, 3)
    assert entries == [("0-1", ": started"), *[(f"{event.id}-1", event.data) for event in events]]
    assert drained < 1, drained


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("gather", [0, 0.01])
def test_a_non_streaming_turn_under_the_test_client_is_whole_in_redis(
    settings, make_api_client, funded, upstream, gather
):
    """``async_to_sync`` runs the turn in a loop of its own, closed as the view returns."""
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_STREAM_MIRROR_GATHER_SECONDS": gather}
    account, _ = funded()
    body = {"model": "rivya-chat-priced", "messages": [{"role": "user", "content": "Say hello"}]}
    response = make_api_client(account).post("/api/v1/chat/completions", body, format="json")
    assert response.status_code == 200, response.content
    turn_id = response.json()["id"]
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        entries = [fields["d"] for _, fields in client.xrange(streams.turn_key(turn_id))]
        alive = client.exists(streams.alive_key(turn_id))
    finally:
        client.delete(streams.turn_key(turn_id), streams.alive_key(turn_id))
        client.close()
    assert entries[0] == ": started", entries
    assert entries[-1] == "[DONE]", entries
    assert json.loads(entries[-2])["usage"]["total_tokens"] > 0
    assert not alive
