"""Where a turn's events are kept, so a client can come back for them.

Every turn's events live in its in-memory ``TurnEventLog`` in the process
that runs it; ``local_turns`` keeps each turn there for
``CHAT_STREAM_RETENTION_SECONDS`` (default 300) after it ends, which is enough
for resuming in a single-process deployment (the embedded default).

With ``CHAT_STREAM_REDIS_URL`` set (the reference project sets it from
``REDIS_URL``), every event is also mirrored into a Redis stream,
``rivya:chat:turn:<turn id>``, entry id ``<event id>-1``, by the loop's
writer, which the log tells of each append (the live stream never waits for
Redis), and ``rivya:chat:session:<session id>`` names the session's latest
turn. Both expire ``CHAT_STREAM_RETENTION_SECONDS`` after the turn ends (and
in any case ``CHAT_TURN_TIMEOUT_SECONDS`` plus that after it started, should
the process die). A resume served by another process reads from there.
While the turn runs, ``rivya:chat:alive:<turn id>`` is refreshed every half
keep-alive interval and lives for three of those: a follower that finds it gone
before the turn's last event knows the process died, and ends its stream with
a ``turn_interrupted`` error event instead of waiting for events that cannot come.

Cancelling a turn that runs in another process goes through the Redis
channel ``rivya:chat:cancel``: every process that runs turns listens on it and
stops the named turn if it is one of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any, Protocol

from rivya_api.chat import redis_batch
from rivya_api.conf import api_settings

logger = logging.getLogger(__name__)

CANCEL_CHANNEL = "rivya:chat:cancel"


def turn_key(turn_id: str) -> str:
    return f"rivya:chat:turn:{turn_id}"


def session_key(session_id: str) -> str:
    return f"rivya:chat:session:{session_id}"


def alive_key(turn_id: str) -> str:
    return f"rivya:chat:alive:{turn_id}"


class RunningTurn(Protocol):
    """What this module needs of a running turn (``rivya_api.chat.turns.ChatTurn``, which imports this
    module: naming the protocol here keeps the dependency one way)."""

    plan: Any  # its turn_id and session_id
    log: Any  # its TurnEventLog

    def cancel(self) -> None: ...


class TurnGoneError(Exception):
    """The process running a followed turn stopped before the turn's last event."""


def _heartbeat_seconds() -> float:
    """How often a running turn's process says it is alive; it counts as gone after three misses."""
    return max(0.5, float(api_settings.CHAT_KEEPALIVE_SECONDS) / 2)


def is_terminal(data: str) -> bool:
    """The last event of a turn: ``[DONE]``, or an error event."""
    return data == "[DONE]" or data.startswith('{"error"')


class LocalTurns:
    """The turns of this process, live and recently ended, by turn and by session."""

    def __init__(self) -> None:
        self.turns: dict[str, RunningTurn] = {}
        self.latest: dict[str, str] = {}

    def add(self, turn: RunningTurn) -> None:
        self.turns[turn.plan.turn_id] = turn
        self.latest[turn.plan.session_id] = turn.plan.turn_id

    def ended(self, turn: RunningTurn) -> None:
        """Forget the turn ``CHAT_STREAM_RETENTION_SECONDS`` from now."""
        asyncio.get_running_loop().call_later(float(api_settings.CHAT_STREAM_RETENTION_SECONDS), self._drop, turn)

    def _drop(self, turn: RunningTurn) -> None:
        turn_id, session_id = turn.plan.turn_id, turn.plan.session_id
        if self.turns.get(turn_id) is turn:
            del self.turns[turn_id]
        if self.latest.get(session_id) == turn_id:
            del self.latest[session_id]

    def get(self, turn_id: str) -> RunningTurn | None:
        return self.turns.get(turn_id)


local_turns = LocalTurns()


# --- Redis ---------------------------------------------------------------------------

_redis_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


def redis_enabled() -> bool:
    return bool(api_settings.CHAT_STREAM_REDIS_URL)


def redis_client() -> Any:
    """The asyncio Redis client of the running loop (one pool per loop)."""
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _redis_clients.get(loop)
    if client is None:
        # Blocking reads wait up to the keep-alive interval; redis-py's default read timeout (5 s
        # since 6.0) would cut them off.
        timeout = float(api_settings.CHAT_KEEPALIVE_SECONDS) + 5
        # A blocking pool: past its size a command waits for a connection. redis-py's default pool
        # raises MaxConnectionsError instead, and a burst of turns then lost their mirrored events.
        pool = aioredis.BlockingConnectionPool.from_url(
            api_settings.CHAT_STREAM_REDIS_URL,
            max_connections=int(api_settings.CHAT_STREAM_REDIS_MAX_CONNECTIONS),
            timeout=float(api_settings.CHAT_STREAM_REDIS_POOL_WAIT_SECONDS),
            decode_responses=True,
            socket_timeout=timeout,
        )
        client = aioredis.Redis(connection_pool=pool)
        _redis_clients[loop] = client
    return client


async def mirror_to_redis(turn: RunningTurn) -> None:
    """Copy the turn's events into its Redis stream as they are appended.

    The log hands each append straight to the loop's ``MirrorWriter`` (``MirrorFeed``); this
    task only starts and ends the stream, and refreshes the alive key while the model is silent.
    """
    client = redis_client()
    key = turn_key(turn.plan.turn_id)
    alive = alive_key(turn.plan.turn_id)
    retention = max(1, int(float(api_settings.CHAT_STREAM_RETENTION_SECONDS) * 1000))  # milliseconds
    ceiling = int(api_settings.CHAT_TURN_TIMEOUT_SECONDS) * 1000 + retention
    heartbeat = _heartbeat_seconds()
    alive_for = int(heartbeat * 3 * 1000)
    feed = None
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(session_key(turn.plan.session_id), turn.plan.turn_id, px=ceiling)
            pipe.xadd(key, {"d": ": started"}, id="0-1")  # the stream exists from the start
            pipe.pexpire(key, ceiling)
            pipe.set(alive, "1", px=alive_for)
            await pipe.execute()
        loop = asyncio.get_running_loop()
        feed = MirrorFeed(mirror_writer(), turn.log, key, alive=(alive, alive_for, heartbeat))
        turn.log.listener = feed.notify
        feed.notify()  # the events appended so far
        while True:
            raise_if_cancelled()  # a cancellation a Redis call swallowed (see raise_if_cancelled)
            if feed.error is not None:
                raise feed.error
            if feed.finished():
                break
            if not await feed.wait(heartbeat) and loop.time() - feed.refreshed >= heartbeat:
                await client.set(alive, "1", px=alive_for)  # a silent model: followers must not give up
                feed.refreshed = loop.time()
        async with client.pipeline(transaction=False) as pipe:
            pipe.pexpire(key, retention)
            pipe.pexpire(session_key(turn.plan.session_id), retention)
            pipe.delete(alive)
            await pipe.execute()
    except Exception:
        # Resume from other processes is lost for this turn; the turn itself goes on.
        logger.exception("Could not mirror chat turn %s to Redis", turn.plan.turn_id)
    finally:
        if feed is not None and turn.log.listener == feed.notify:
            turn.log.listener = None


class MirrorFeed:
    """One turn's events on their way to Redis: what is written, what failed, who waits for the end."""

    def __init__(self, writer: MirrorWriter, log: Any, key: str, *, alive: tuple[str, int, float]) -> None:
        self.writer, self.log, self.key = writer, log, key
        self.alive, self.alive_for, self.heartbeat = alive
        self.loop = asyncio.get_running_loop()
        self.refreshed = self.loop.time()  # when the alive key was last set
        self.written = 0
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[bool] | None = None  # the mirror task, waiting for the end

    def notify(self) -> None:
        """The log's listener: an event was appended, or the log closed."""
        if self.error is None:
            self.writer.ready(self)
        self.wake_if_finished()

    def take(self) -> tuple[list[tuple], int]:
        """The commands (argument tuples) for the events not written yet (events appended meanwhile go in the next)."""
        batch = self.log.events[self.written :]
        key = self.key
        commands: list[tuple] = [("XADD", key, f"{event.id}-1", "d", event.data) for event in batch]
        if commands and self.loop.time() - self.refreshed >= self.heartbeat:  # it lives three heartbeats
            self.refreshed = self.loop.time()
            commands.append(("SET", self.alive, "1", "PX", self.alive_for))
        return commands, len(batch)

    def finished(self) -> bool:
        return self.log.closed and self.written == len(self.log.events)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def wake_if_finished(self) -> None:
        if self.finished():
            self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(True)

    async def wait(self, timeout: float) -> bool:
        """Until the feed has written the closed log's last event or failed; False after ``timeout``."""
        self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _settle, self.waiter, False)
        try:
            return await self.waiter
        finally:
            timer.cancel()
            self.waiter = None


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class MirrorWriter:
    """The event writes of every turn mirrored by this loop, sent to Redis together.

    A turn's log tells its ``MirrorFeed`` of each append, and the feed tells the writer
    (no task per turn wakes per event); the new events of every turn that are ready together go
    in one pipeline: one round trip (and one socket write) for all of them, instead of one per
    turn and event, which was most of a relayed chunk's CPU in production. A flush starts
    ``CHAT_STREAM_MIRROR_GATHER_SECONDS`` after the first event that is ready (0: on the next turn of
    the loop), and what becomes ready while it is in flight goes in the next one. One flush runs
    at a time, so a turn never has two writes in flight and its stream's entries are added in
    order; one turn's failed write fails only that turn.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.gather = float(api_settings.CHAT_STREAM_MIRROR_GATHER_SECONDS)
        self.packed = bool(api_settings.CHAT_STREAM_MIRROR_PACKED)  # rivya_api.chat.redis_batch
        self.timeout = client.connection_pool.connection_kwargs.get("socket_timeout")  # for a whole batch
        self.ready_feeds: dict[MirrorFeed, None] = {}  # an ordered set
        self.flushing = False
        self.gathering: asyncio.Future[bool] | None = None  # the flush, gathering events (_gather)
        self.task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak reference to a task

    def ready(self, feed: MirrorFeed) -> None:
        """``feed`` has events to write: in the next flush."""
        self.ready_feeds[feed] = None
        if feed.log.closed and self.gathering is not None:
            _settle(self.gathering, True)
        if not self.flushing:
            self.flushing = True
            self.task = asyncio.get_running_loop().create_task(self._flush(), name="chat-mirror-writer")

    async def _flush(self) -> None:
        try:
            while self.ready_feeds:
                # The turns that append meanwhile join the batch: CHAT_STREAM_MIRROR_GATHER_SECONDS (at
                # 4,000 chunks/s a write per loop turn was a tenth of the process's CPU, most of it
                # the socket write), or one turn of the loop. What becomes ready while a pipeline is
                # in flight fills the next one.
                # A turn's last events (its log is closed) go out at once, ending the gather: nothing
                # of that turn follows, and its end waits for them (ChatTurn._wait_for_mirror).
                if not any(feed.log.closed for feed in self.ready_feeds):
                    await self._gather()
                    raise_if_cancelled()
                feeds, self.ready_feeds = list(self.ready_feeds), {}
                batch = [(feed, *feed.take()) for feed in feeds if feed.error is None]
                batch = [item for item in batch if item[1]]
                if batch:
                    await self._send(batch)
        finally:
            self.flushing = False
            for feed in self.ready_feeds:  # only when this task was cancelled (the loop is closing)
                feed.fail(asyncio.CancelledError())

    async def _gather(self) -> None:
        """``self.gather`` seconds, or until a turn's log closes (``ready``)."""
        if self.gather <= 0:
            await asyncio.sleep(0)  # one turn of the loop
            return
        loop = asyncio.get_running_loop()
        self.gathering = loop.create_future()
        timer = loop.call_later(self.gather, _settle, self.gathering, True)
        try:
            await self.gathering
        finally:
            timer.cancel()
            self.gathering = None

    async def _send(self, batch: list[tuple[MirrorFeed, list[tuple], int]]) -> None:
        try:
            if self.packed:
                commands = [args for _, feed_commands, _ in batch for args in feed_commands]
                results = await redis_batch.execute(self.client, commands, self.timeout)
            else:
                async with self.client.pipeline(transaction=False) as pipe:
                    for _, commands, _ in batch:
                        for args in commands:
                            pipe.execute_command(*args)
                    results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the error of every turn in the batch; a cancellation cancels them
            for feed, _, _ in batch:
                feed.fail(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            return
        position = 0
        for feed, commands, count in batch:  # each turn gets the first error of its own commands
            mine = results[position : position + len(commands)]
            position += len(commands)
            error = next((result for result in mine if isinstance(result, Exception)), None)
            if error is not None:
                feed.fail(error)
                continue
            feed.written += count
            feed.wake_if_finished()


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MirrorWriter] = weakref.WeakKeyDictionary()


def mirror_writer() -> MirrorWriter:
    """The running loop's ``MirrorWriter``."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = MirrorWriter(redis_client())
    return writer


async def redis_follow(turn_id: str, *, after: int, keepalive: float) -> AsyncIterator[Any]:
    """The turn's events after id ``after`` from Redis, live until its last event.

    Yields ``(id, data)`` pairs and ``None`` on silences; stops at once if the
    stream does not exist (expired, or never mirrored). Raises ``TurnGoneError``
    when the turn's process stopped saying it is alive before its last event
    (it died: the stream would never end).
    """
    client = redis_client()
    key = turn_key(turn_id)
    last = f"{after}-1" if after > 0 else "0-1"
    newest = await client.xrevrange(key, count=1)
    if not newest:
        return
    newest_id, fields = newest[0]
    if is_terminal(fields["d"]) and int(newest_id.split("-")[0]) <= after:
        return  # the turn has ended and the client has every event
    while True:
        reply = await client.xread({key: last}, block=max(1, int(keepalive * 1000)), count=100)
        if not reply:
            present, running = await client.exists(key), await client.exists(alive_key(turn_id))
            if not present:
                return
            if not running:
                raise TurnGoneError(turn_id)
            yield None
            continue
        for entry_id, fields in reply[0][1]:
            last = entry_id
            data = fields["d"]
            yield int(entry_id.split("-")[0]), data
            if is_terminal(data):
                return


async def redis_has_turn(turn_id: str) -> bool:
    return bool(await redis_client().exists(turn_key(turn_id)))


async def request_cancel(turn_id: str) -> bool:
    """Stop ``turn_id`` wherever it runs: here directly, elsewhere through Redis."""
    turn = local_turns.get(turn_id)
    if turn is not None:
        turn.cancel()
        return True
    if redis_enabled():
        await redis_client().publish(CANCEL_CHANNEL, turn_id)
        return True
    return False


def ensure_cancel_listener() -> None:
    """Listen on the cancel channel in this loop (once), stopping local turns that are named."""
    if not redis_enabled():
        return
    loop = asyncio.get_running_loop()
    task = _listeners.get(loop)
    if task is None or task.done():
        _listeners[loop] = loop.create_task(_listen_for_cancels(), name="chat-cancel-listener")


# How often the cancel listener stops waiting for a message to see whether it was told to stop.
CANCEL_LISTENER_POLL_SECONDS = 1.0


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` in a task that was cancelled while an await swallowed it.

    For the long-lived Redis tasks (the cancel listener, the event mirror), which
    must end when cancelled: on Python 3.11 ``asyncio.wait_for`` returns the inner
    result instead of raising when the cancellation arrives as the inner operation
    completes (CPython gh-86296, fixed in 3.12), and redis-py sends every command
    through it when a ``socket_timeout`` is set. The task still counts the request
    (``Task.cancelling()``), so these tasks check it after each Redis call; else the
    listener goes on to wait for messages forever and the event loop's shutdown
    (``asyncio.run``, under ``async_to_sync``: every non-streaming turn under WSGI) hangs.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _listen_for_cancels() -> None:
    while True:
        raise_if_cancelled()
        pubsub = None
        try:
            pubsub = redis_client().pubsub()
            await pubsub.subscribe(CANCEL_CHANNEL)
            while True:
                raise_if_cancelled()
                # A bounded wait, not listen(): a cancellation swallowed inside a read or a
                # reconnection is seen within CANCEL_LISTENER_POLL_SECONDS.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=CANCEL_LISTENER_POLL_SECONDS)
                if message is not None and message.get("type") == "message":
                    turn = local_turns.get(message["data"])
                    if turn is not None:
                        turn.cancel()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Chat cancel listener lost Redis; reconnecting")
            await asyncio.sleep(1)
        finally:
            if pubsub is not None:
                # Give the connection back (closed, without waiting on the socket) rather than leak it.
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
