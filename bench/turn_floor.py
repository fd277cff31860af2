"""``POST /bench/turn-floor``: the least I/O a streamed OpenAI-compatible chat turn cannot do without.

The floor of issue 25's targets 4 and 5 (CPU a turn, TTFT), as ``GET /bench/floor`` is the floor of
``GET /api/v1/credits``: a bare async Django view, served by the same uvicorn process, settings and
middleware as ``POST /api/v1/chat/completions`` (``bench/chat_harness.py`` starts the gateway with
``bench.settings`` for it), that does a turn's round trips and none of our work (no serializer, no
pricing, no hold, no session, no event log, no idempotency, no keep-alive, no resume):

1. **The key, through the shared cache: one MGET** of two keys (the key's entry and the address's
   failed-lookup counter, as the key check reads them).
2. **The rate limit's increment** (INCR + EXPIRE), only while the gateway's own limiter is on
   (``RIVYA_API["RATE_LIMIT"]``; the chat harness runs it with a limit no load reaches), in the
   MGET's round trip where the gateway folds the two (``RATE_LIMIT_IN_AUTH_TRIP``, on by default),
   else a round trip of its own: a floor must not do more than what it bounds.
3. **One database round trip that writes the turn**: one ``INSERT`` in autocommit. A turn's rows and
   its hold could be one statement (a CTE), so one autocommitted statement is the least; ours sends
   a ``BEGIN … COMMIT`` batch in one pipeline, also one round trip but more statements. It goes out
   beside the upstream request, as ours does (the model's time to first token hides it).
4. **The upstream request** through httpx clients made as the gateway makes its own
   (``openai_compatible._upstream_clients()``: with ``CHAT_UPSTREAM_SHARDED_POOL`` a set of
   ``upstream_clients.SHARDS`` clients sharing the keep-alive connections, each turn on the least busy
   one; else one client; and the network backend the gateway gives them,
   ``providers/asyncio_network.py``), but its own: a burst on the floor right after the turn's then
   opens its connections as the turn's did, rather than reusing the turn's. Plain httpx was tried
   first: with 200 turns open, httpcore's pool checks every connection for each request, and each
   check is a ``select`` on its socket under anyio; that was 40 % of the floor's CPU, more than the
   whole of our turn, so a floor with it bounds nothing (``RIVYA_BENCH_FLOOR_PLAIN_HTTPX=1`` brings
   it back, to see it). The body is read raw (``aiter_raw``) and split on blank lines, as cheap as
   a reader of SSE gets in Python; not the gateway's own body reader (``chunked_body.py``).
   ``RIVYA_BENCH_FLOOR_UPSTREAM_CLIENTS=N`` sets the number of clients (N pools of about 1/N the
   connections): how much of the floor is httpcore's pool bookkeeping, which walks every pooled
   connection (and, for its keep-alive count, every one again for each idle one) on each request and
   each response's end (encode/httpcore#1035, still open).
5. **Each upstream chunk relayed** as ``id: n`` + ``data: {chat.completion.chunk}`` re-serialised
   (parsed, our model id put in, dumped compactly), as ours relays it; ``data: [DONE]`` at the end.
6. **In production, each event mirrored to a Redis stream** (XADD, entry id ``n-1``) with
   ``redis.asyncio`` on a ``BlockingConnectionPool`` (the kind ``rivya_api/chat/streams.py`` uses),
   sent after the events have gone to the client (the live stream never waits for Redis): the
   events of one upstream read in one round trip (one XADD, or a pipeline of them), as ours batches
   what is pending; the last round trip also sets the stream's EXPIRE.
7. **One database round trip at the end, the settle**: one ``UPDATE`` in autocommit.

Database access is the cheapest on each configuration: on PostgreSQL psycopg 3's async connection
(``psycopg_pool.AsyncConnectionPool``, autocommit) on the event loop itself, with no thread hop;
Django's ORM would run the same statement through ``sync_to_async`` in a worker thread (two thread
switches a statement). On SQLite (embedded) there is no async driver: Django's connection through
``sync_to_async`` (thread-sensitive, the one thread Django uses for it), as a bare Django app does.
The cache and limiter are ``redis.asyncio`` on the loop where they are Redis, and Django's
in-memory cache called in place where they are not (no I/O to wait for).

The table is the floor's own, ``bench_turn_floor`` (created on first use): no model of ours.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
import weakref
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from rivya_api.chat.providers.asyncio_network import use_asyncio_network
from rivya_api.chat.providers.upstream_clients import SHARDS, UpstreamClients
from rivya_api.conf import api_settings
from rivya_api.keys import onetrip
from rivya_api.keys.throttling import increment, parse_rate

TABLE = "bench_turn_floor"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id {{pk}}, turn_id varchar(40) NOT NULL, "
    "model varchar(100) NOT NULL, status varchar(20) NOT NULL, tokens integer NOT NULL DEFAULT 0, "
    "started double precision NOT NULL, ended double precision)"
)
INSERT = f"INSERT INTO {TABLE} (turn_id, model, status, started) VALUES (%s, %s, 'running', %s) RETURNING id"
SETTLE = f"UPDATE {TABLE} SET status = 'completed', tokens = %s, ended = %s WHERE id = %s"
MODEL = "rivya-chat-plus"
CLIENTS_ENV = "RIVYA_BENCH_FLOOR_UPSTREAM_CLIENTS"
RETENTION_SECONDS = 300

_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _redis_url() -> str | None:
    return api_settings.CHAT_STREAM_REDIS_URL or None


async def _state() -> dict[str, Any]:
    """This loop's clients, made once by the first turn (the turns arriving meanwhile wait for them)."""
    loop = asyncio.get_running_loop()
    made = _loops.get(loop)
    if made is None:
        made = _loops[loop] = loop.create_task(_make_state())
    return await asyncio.shield(made)


def _shards() -> int:
    """As many clients as the gateway's own set (``CHAT_UPSTREAM_SHARDED_POOL``), or ``CLIENTS_ENV``'s."""
    default = SHARDS if api_settings.CHAT_UPSTREAM_SHARDED_POOL else 1
    return int(os.environ.get(CLIENTS_ENV, default))


async def _make_state() -> dict[str, Any]:
    """Upstream client(s), Redis client, PostgreSQL pool."""
    plain = os.environ.get("RIVYA_BENCH_FLOOR_PLAIN_HTTPX") == "1"

    def make(limits: httpx.Limits, ssl_context: Any) -> httpx.AsyncClient:
        client = httpx.AsyncClient(limits=limits, verify=ssl_context)
        return client if plain else use_asyncio_network(client)

    state = {"http": UpstreamClients(make, _shards())}
    if _redis_url():
        import redis.asyncio as aioredis

        pool = aioredis.BlockingConnectionPool.from_url(
            _redis_url(), max_connections=int(api_settings.CHAT_STREAM_REDIS_MAX_CONNECTIONS), decode_responses=True
        )
        state["redis"] = aioredis.Redis(connection_pool=pool)
    if _postgres():
        state["pg"] = await _pg_pool()
    else:
        await sync_to_async(_sqlite_create)()
    return state


async def _pg_pool() -> Any:
    from psycopg_pool import AsyncConnectionPool

    db = settings.DATABASES["default"]
    conninfo = " ".join(
        f"{name}={value}"
        for name, value in (("dbname", db["NAME"]), ("user", db.get("USER")), ("password", db.get("PASSWORD")),
                            ("host", db.get("HOST")), ("port", db.get("PORT")))
        if value
    )  # fmt: skip
    django_pool = db.get("OPTIONS", {}).get("pool")  # the same size as Django's own pool
    max_size = int(django_pool.get("max_size", 30)) if isinstance(django_pool, dict) else 30
    pool = AsyncConnectionPool(conninfo, min_size=2, max_size=max_size, kwargs={"autocommit": True}, open=False)
    await pool.open()
    async with pool.connection() as conn:
        await conn.execute(CREATE.format(pk="bigserial PRIMARY KEY"))
    return pool


def _sqlite_create() -> None:
    with connection.cursor() as cursor:
        cursor.execute(CREATE.format(pk="integer PRIMARY KEY AUTOINCREMENT"))


def _sqlite(sql: str, params: tuple) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone() if sql.startswith("INSERT") else None
    return row[0] if row else None


async def _db(state: dict, sql: str, params: tuple) -> Any:
    """One statement, autocommitted: one round trip."""
    if "pg" not in state:
        return await sync_to_async(_sqlite)(sql, params)
    async with state["pg"].connection() as conn:
        cursor = await conn.execute(sql, params)
        row = await cursor.fetchone() if sql.startswith("INSERT") else None
    return row[0] if row else None


async def _check_key(state: dict, request: Any) -> None:
    """The key's MGET through the shared cache, then the limiter's increment if the limiter is on."""
    key = request.headers.get("Authorization", "")[-12:]
    names = [f"bench:turn-floor:entry:{key}", f"bench:turn-floor:failed:{request.META.get('REMOTE_ADDR')}"]
    limited = parse_rate(api_settings.RATE_LIMIT) is not None
    if "redis" in state:
        if limited and onetrip.cache() is not None:  # the gateway folds the two (RATE_LIMIT_IN_AUTH_TRIP)
            async with state["redis"].pipeline(transaction=False) as pipe:
                pipe.mget(names).incr("bench:turn-floor:limit").expire("bench:turn-floor:limit", 61)
                await pipe.execute()
            return
        await state["redis"].mget(names)
        if limited:
            async with state["redis"].pipeline(transaction=False) as pipe:
                pipe.incr("bench:turn-floor:limit").expire("bench:turn-floor:limit", 61)
                await pipe.execute()
        return
    caches[api_settings.KEY_CACHE_ALIAS].get_many(names)  # in memory: no I/O to wait for
    if limited:
        increment("bench:turn-floor:limit", 61)


def _relayed(block: bytes) -> str | None:
    """An upstream SSE event's chunk re-serialised as ours (our model's id); None for anything else."""
    if not block.startswith(b"data: ") or block == b"data: [DONE]":
        return None
    try:
        chunk = json.loads(block[6:])
    except ValueError:
        return None
    chunk["model"] = MODEL
    return json.dumps(chunk, separators=(",", ":"))


async def _events(state: dict, turn_id: str, row: asyncio.Task, body: bytes):
    """The upstream's chunks as SSE events, each mirrored after it was sent; the settle; ``[DONE]``."""
    url = f"{os.environ['RIVYA_UPSTREAM_CHAT_BASE_URL']}/chat/completions"  # what the harness points ours at
    headers = {"Authorization": f"Bearer {os.environ.get('RIVYA_UPSTREAM_CHAT_API_KEY', '')}"}
    upstream = {**json.loads(body), "model": os.environ.get("RIVYA_UPSTREAM_CHAT_MODEL", "bench"), "stream": True}
    stream_key, number, buffer = f"rivya:bench:turn-floor:{turn_id}", 0, b""
    mirror = state.get("redis")
    with state["http"].lease() as client:  # the least busy of the floor's clients, as the gateway leases its own
        async with client.stream("POST", url, json=upstream, headers=headers, timeout=60) as response:
            async for raw in response.aiter_raw():
                *blocks, buffer = (buffer + raw).split(b"\n\n")
                relayed = [data for block in blocks if (data := _relayed(block)) is not None]
                if not relayed:
                    continue
                events = [(number + i + 1, data) for i, data in enumerate(relayed)]
                number += len(events)
                yield b"".join(f"id: {n}\ndata: {data}\n\n".encode() for n, data in events)
                if mirror is not None:
                    await _mirror(mirror, stream_key, events)
    await _db(state, SETTLE, (number, time.time(), await row))
    number += 1
    yield f"id: {number}\ndata: [DONE]\n\n".encode()
    if mirror is not None:
        await _mirror(mirror, stream_key, [(number, "[DONE]")], expire=True)


async def _mirror(client: Any, key: str, events: list[tuple[int, str]], *, expire: bool = False) -> None:
    """One round trip: one XADD, or a pipeline of them (and the stream's EXPIRE at the end)."""
    if len(events) == 1 and not expire:
        await client.xadd(key, {"d": events[0][1]}, id=f"{events[0][0]}-1")
        return
    async with client.pipeline(transaction=False) as pipe:
        for number, data in events:
            pipe.xadd(key, {"d": data}, id=f"{number}-1")
        if expire:
            pipe.expire(key, RETENTION_SECONDS)
        await pipe.execute()


@csrf_exempt
async def turn_floor(request: Any) -> HttpResponse:
    """See the module docstring."""
    if request.method != "POST":
        return HttpResponse(status=405)
    state = await _state()
    await _check_key(state, request)
    turn_id = uuid.uuid4().hex
    row = asyncio.ensure_future(_db(state, INSERT, (turn_id, MODEL, time.time())))  # beside the upstream request
    response = StreamingHttpResponse(_events(state, turn_id, row, request.body), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response
