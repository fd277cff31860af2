"""Resuming a turn's stream by Last-Event-ID, from memory and from Redis, and the buffer's expiry."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from rivya_api.chat import streams
from rivya_api.chat.models import ChatMessage
from rivya_api.chat.providers.local import local_reply
from tests.rivya_api.chat.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "resume me"}]


def sse_events(lines, stop_after: int | None = None) -> list[tuple[int, str]]:
    events, event_id = [], None
    for line in lines:
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            events.append((event_id, line[6:]))
            if stop_after is not None and len(events) == stop_after:
                break
    return events


def content_of(events: list[tuple[int, str]]) -> str:
    text = ""
    for _, data in events:
        if data != "[DONE]":
            chunk = json.loads(data)
            if chunk.get("choices"):
                text += chunk["choices"][0]["delta"].get("content") or ""
    return text


def start_and_drop(url: str, secret: str, after: int) -> tuple[str, list[tuple[int, str]]]:
    """Start a streamed turn on the slow model and hang up after ``after`` events."""
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            f"{url}/api/v1/chat/completions",
            json={"model": "rivya-chat-slow", "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=20,
        ) as response,
    ):
        return response.headers["Rivya-Session-Id"], sse_events(response.iter_lines(), stop_after=after)


def resume(url: str, secret: str, session_id: str, **headers: str) -> httpx.Response:
    with httpx.Client() as client:
        response = client.get(
            f"{url}/api/v1/chat/sessions/{session_id}/stream",
            headers={"Authorization": f"Bearer {secret}", **headers},
            timeout=20,
        )
    return response


def test_reconnect_with_last_event_id_gets_exactly_the_missing_events(live_server_url, funded, upstream):
    _, secret = funded()
    session_id, first = start_and_drop(live_server_url, secret, after=3)
    assert [event_id for event_id, _ in first] == [1, 2, 3]
    response = resume(live_server_url, secret, session_id, **{"Last-Event-ID": "3"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    rest = sse_events(response.text.splitlines())
    ids = [event_id for event_id, _ in first + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert rest[-1][1] == "[DONE]"
    assert json.loads(rest[-2][1])["choices"] == []
    assert content_of(first + rest) == local_reply(MESSAGES)


def test_client_gone_for_good_the_turn_completes_and_replays_whole(live_server_url, funded, upstream):
    _, secret = funded()
    session_id, _ = start_and_drop(live_server_url, secret, after=2)
    wait_for(lambda: ChatMessage.objects.filter(role="assistant", status="completed").exists())
    response = resume(live_server_url, secret, session_id)  # no position: the whole turn
    events = sse_events(response.text.splitlines())
    assert events[0][0] == 1
    assert events[-1][1] == "[DONE]"
    assert content_of(events) == local_reply(MESSAGES)
    query = httpx.get(
        f"{live_server_url}/api/v1/chat/sessions/{session_id}/stream?last_event_id={len(events) - 1}",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert sse_events(query.text.splitlines()) == [(len(events), "[DONE]")]


@pytest.mark.redis
def test_resume_from_another_process_reads_the_redis_buffer(live_server_url, funded, upstream):
    _, secret = funded()
    session_id, first = start_and_drop(live_server_url, secret, after=2)
    turn = wait_for(lambda: ChatMessage.objects.filter(role="assistant", status="completed").first())
    wait_for(lambda: streams.local_turns.get(turn.public_id) and streams.local_turns.get(turn.public_id).mirror.done())
    # This process forgets the turn, as another process never knew it.
    streams.local_turns.turns.pop(turn.public_id)
    response = resume(live_server_url, secret, session_id, **{"Last-Event-ID": "2"})
    rest = sse_events(response.text.splitlines())
    assert [event_id for event_id, _ in first + rest] == list(range(1, len(first + rest) + 1))
    assert content_of(first + rest) == local_reply(MESSAGES)


@pytest.mark.rivya_settings({"RIVYA_API": {"CHAT_STREAM_RETENTION_SECONDS": 0.3}})
def test_the_buffer_expires_after_the_retention(live_server_url, funded, upstream):
    _, secret = funded()
    response = httpx.post(
        f"{live_server_url}/api/v1/chat/completions",
        json={"model": "rivya-chat-1", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
    )
    session_id = response.headers["Rivya-Session-Id"]
    assert resume(live_server_url, secret, session_id).status_code == 200  # still there right after
    time.sleep(0.6)
    expired = resume(live_server_url, secret, session_id)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "stream_expired"


def test_resume_checks_position_and_account(live_server_url, funded, upstream):
    _, secret = funded()
    _, other_secret = funded()
    session_id, _ = start_and_drop(live_server_url, secret, after=1)
    bad = resume(live_server_url, secret, session_id, **{"Last-Event-ID": "soon"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "last_event_id"
    assert resume(live_server_url, other_secret, session_id).status_code == 404
    assert resume(live_server_url, "rvya_sk_nope", session_id).status_code == 401


@pytest.mark.redis
def test_a_position_past_an_ended_turn_answers_at_once_from_either_buffer(live_server_url, funded, upstream):
    _, secret = funded()
    session_id, _ = start_and_drop(live_server_url, secret, after=1)
    turn = wait_for(lambda: ChatMessage.objects.filter(role="assistant", status="completed").first())
    wait_for(lambda: streams.local_turns.get(turn.public_id) and streams.local_turns.get(turn.public_id).mirror.done())
    started = time.monotonic()
    local = resume(live_server_url, secret, session_id, **{"Last-Event-ID": "767841"})
    streams.local_turns.turns.pop(turn.public_id)  # now served from Redis, as in another process
    remote = resume(live_server_url, secret, session_id, **{"Last-Event-ID": "767841"})
    assert (local.status_code, local.text, remote.status_code, remote.text) == (200, "", 200, "")
    assert time.monotonic() - started < 3  # neither waited for events that cannot come
    huge = resume(live_server_url, secret, session_id, **{"Last-Event-ID": str(2**64)})
    assert huge.status_code == 400


@pytest.mark.redis
def test_the_redis_mirror_keeps_events_appended_while_a_batch_is_written(settings):
    """Events that arrive while a batch is on its way to Redis go in the next batch; none is skipped."""
    import asyncio
    from types import SimpleNamespace

    import redis

    from rivya_api.chat.turns import TurnEventLog

    plan = SimpleNamespace(turn_id=f"turn_mirror_{time.time_ns()}", session_id="chat_mirror")
    turn = SimpleNamespace(plan=plan, log=TurnEventLog())

    async def run() -> None:
        mirror = asyncio.ensure_future(streams.mirror_to_redis(turn))
        for index in range(1, 201):
            turn.log.append(json.dumps({"n": index}))
            await asyncio.sleep(0)  # the mirror may be mid-write: appends land during its round trips
        turn.log.append("[DONE]")
        turn.log.close()
        await mirror
        await streams.redis_client().aclose()

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        asyncio.run(run())
        entries = client.xrange(streams.turn_key(plan.turn_id))
        assert [entry_id for entry_id, _ in entries] == ["0-1"] + [f"{n}-1" for n in range(1, 202)]
        assert entries[-1][1]["d"] == "[DONE]"
    finally:
        client.delete(streams.turn_key(plan.turn_id), streams.session_key(plan.session_id))


@pytest.mark.redis
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "pipeline"])
def test_turns_mirrored_together_share_pipelines_and_keep_their_own_events_and_errors(settings, packed):
    """The MirrorWriter batches every turn's writes: each stream still equals its own log, in order,
    the writes took fewer pipelines than events, and one turn's failing write fails only that turn;
    the same packed by rivya_api.chat.redis_batch and through redis-py's pipeline."""
    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_STREAM_MIRROR_PACKED": packed}
    import asyncio
    from types import SimpleNamespace

    import redis

    from rivya_api.chat.turns import TurnEventLog

    stamp = time.time_ns()
    turns = [
        SimpleNamespace(
            plan=SimpleNamespace(turn_id=f"turn_batch_{stamp}_{n}", session_id=f"chat_b{n}"), log=TurnEventLog()
        )
        for n in range(4)
    ]
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    broken = turns[3]
    sent: list[int] = []

    async def run() -> None:
        writer = streams.mirror_writer()
        assert writer.packed is packed
        send = writer._send

        async def counted(batch):  # the plain path would send one pipeline per turn and event
            sent.append(len(batch))
            await send(batch)

        writer._send = counted
        mirrors = [asyncio.ensure_future(streams.mirror_to_redis(turn)) for turn in turns]
        for index in range(1, 51):
            if index == 25:  # from here on this turn's XADDs fail (WRONGTYPE)
                client.delete(streams.turn_key(broken.plan.turn_id))
                client.set(streams.turn_key(broken.plan.turn_id), "not a stream", ex=60)
            for turn in turns:
                turn.log.append(json.dumps({"n": index, "turn": turn.plan.turn_id}))
            await asyncio.sleep(0.001)
        for turn in turns:
            turn.log.append("[DONE]")
            turn.log.close()
        await asyncio.gather(*mirrors)
        await streams.redis_client().aclose()

    try:
        asyncio.run(run())
        for turn in turns[:3]:
            entries = client.xrange(streams.turn_key(turn.plan.turn_id))
            expected = [(f"{event.id}-1", event.data) for event in turn.log.events]
            assert [(entry_id, fields["d"]) for entry_id, fields in entries] == [("0-1", ": started"), *expected]
        assert client.get(streams.turn_key(broken.plan.turn_id)) == "not a stream"  # nothing written there
        assert max(sent) > 1  # some pipelines carried the writes of several turns
    finally:
        client.delete(
            *[streams.turn_key(t.plan.turn_id) for t in turns], *[streams.session_key(t.plan.session_id) for t in turns]
        )


def mirror_one_turn(settings, gather: float, events: int) -> tuple[int, list[tuple[str, str]], list]:
    """Mirror a turn whose events come 1 ms apart; (pipelines the writer sent, Redis entries, the log's events)."""
    import asyncio
    from types import SimpleNamespace

    import redis

    from rivya_api.chat.turns import TurnEventLog

    settings.RIVYA_API = {**settings.RIVYA_API, "CHAT_STREAM_MIRROR_GATHER_SECONDS": gather}
    plan = SimpleNamespace(turn_id=f"turn_gather_{time.time_ns()}", session_id=f"chat_g{time.time_ns()}")
    turn = SimpleNamespace(plan=plan, log=TurnEventLog())
    sent: list[int] = []

    async def run() -> None:
        writer = streams.mirror_writer()
        assert writer.gather == gather
        send = writer._send

        async def counted(batch):
            sent.append(len(batch))
            await send(batch)

        writer._send = counted
        mirror = asyncio.ensure_future(streams.mirror_to_redis(turn))
        for index in range(events):
            turn.log.append(json.dumps({"n": index}))
            await asyncio.sleep(0.001)
        turn.log.append("[DONE]")
        turn.log.close()
        await mirror
        await streams.redis_client().aclose()

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        asyncio.run(run())
        entries = [(entry_id, fields["d"]) for entry_id, fields in client.xrange(streams.turn_key(plan.turn_id))]
    finally:
        client.delete(streams.turn_key(plan.turn_id), streams.session_key(plan.session_id))
    return len(sent), entries, turn.log.events


@pytest.mark.redis
def test_the_mirror_gathers_events_for_its_setting_and_writes_the_same_entries(settings):
    """CHAT_STREAM_MIRROR_GATHER_SECONDS: fewer, larger writes than one per loop turn (0), the same stream."""
    gathered, entries, events = mirror_one_turn(settings, 0.05, 100)
    assert entries == [("0-1", ": started"), *[(f"{event.id}-1", event.data) for event in events]]
    eager, entries, events = mirror_one_turn(settings, 0, 100)
    assert entries == [("0-1", ": started"), *[(f"{event.id}-1", event.data) for event in events]]
    assert gathered * 3 <= eager, (gathered, eager)


@pytest.mark.redis
def test_a_silent_redis_follow_outlasts_the_clients_default_read_timeout(settings):
    """redis-py reads time out after 5 s by default; a follow waits a whole keep-alive interval."""
    import asyncio

    import redis

    turn_id = "turn_silent_follow"
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.xadd(streams.turn_key(turn_id), {"d": ": started"}, id="0-1")
    client.expire(streams.turn_key(turn_id), 60)
    client.set(streams.alive_key(turn_id), "1", ex=60)  # its process is running, only silent

    async def first_item() -> object:
        follow = streams.redis_follow(turn_id, after=0, keepalive=5.5)
        try:
            return await follow.__anext__()  # the started marker is id 0: skipped, then silence
        finally:
            await follow.aclose()

    try:
        assert asyncio.run(first_item()) is None  # a keep-alive, not redis.exceptions.TimeoutError
    finally:
        client.delete(streams.turn_key(turn_id), streams.alive_key(turn_id))


@pytest.mark.redis
@pytest.mark.rivya_settings({"RIVYA_API": {"CHAT_KEEPALIVE_SECONDS": 0.3}})
def test_a_follower_of_a_turn_whose_process_died_gets_an_error_event_not_silence(live_server_url, funded, upstream):
    """The process running a turn died (its alive key lapsed) before the last event: the resume ends."""
    import redis

    _, secret = funded()
    session_id, _ = start_and_drop(live_server_url, secret, after=1)
    turn = wait_for(lambda: ChatMessage.objects.filter(role="assistant", status="completed").first())
    wait_for(lambda: streams.local_turns.get(turn.public_id) and streams.local_turns.get(turn.public_id).mirror.done())
    streams.local_turns.turns.pop(turn.public_id)  # another process's turn, as far as this one knows
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = streams.turn_key(turn.public_id)
    last_id, _ = client.xrevrange(key, count=1)[0]
    client.xdel(key, last_id)  # as if the process died before writing [DONE]
    assert not client.exists(streams.alive_key(turn.public_id))
    response = resume(live_server_url, secret, session_id)
    events = sse_events(response.text.splitlines())
    assert json.loads(events[-1][1])["error"]["code"] == "turn_interrupted"


def test_the_stream_route_answers_other_methods_with_405(live_server_url, funded, upstream):
    _, secret = funded()
    session_id, _ = start_and_drop(live_server_url, secret, after=1)
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        response = httpx.request(
            method,
            f"{live_server_url}/api/v1/chat/sessions/{session_id}/stream",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 405, method
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert httpx.put(f"{live_server_url}/api/v1/chat/sessions/{session_id}/stream").status_code == 401


@pytest.mark.redis
def test_the_mirror_task_does_not_wake_per_event(settings, monkeypatch):
    """The log hands appends to the writer: the turn's mirror task waits once for the end, not once an event."""
    import asyncio
    from types import SimpleNamespace

    import redis

    from rivya_api.chat.turns import TurnEventLog

    plan = SimpleNamespace(turn_id=f"turn_mirror_wakes_{time.time_ns()}", session_id="chat_mirror_wakes")
    turn = SimpleNamespace(plan=plan, log=TurnEventLog())
    waits = []
    wait = streams.MirrorFeed.wait

    async def counted(feed, timeout):
        waits.append(timeout)
        return await wait(feed, timeout)

    monkeypatch.setattr(streams.MirrorFeed, "wait", counted)

    async def run() -> None:
        mirror = asyncio.ensure_future(streams.mirror_to_redis(turn))
        await asyncio.sleep(0.2)  # started
        for index in range(1, 101):
            turn.log.append(json.dumps({"n": index}))
            await asyncio.sleep(0.001)
        turn.log.append("[DONE]")
        turn.log.close()
        await mirror
        await streams.redis_client().aclose()

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        asyncio.run(run())
        entries = client.xrange(streams.turn_key(plan.turn_id))
        assert [entry_id for entry_id, _ in entries] == ["0-1"] + [f"{n}-1" for n in range(1, 102)]
        assert len(waits) <= 2, waits
    finally:
        client.delete(streams.turn_key(plan.turn_id), streams.session_key(plan.session_id))


def test_the_packed_batch_is_what_redis_py_would_send():
    """rivya_api.chat.redis_batch packs each command as redis-py's own connection does."""
    from redis.asyncio.connection import Connection

    from rivya_api.chat import redis_batch

    commands = [("XADD", "rivya:chat:turn:t", "7-1", "d", 'data: {"é": "✓ 😀"}'), ("SET", "alive", "1", "PX", 30000)]
    assert redis_batch.pack(commands) == b"".join(Connection().pack_commands(commands))
