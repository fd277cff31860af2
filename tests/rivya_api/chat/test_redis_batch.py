"""The mirror's packed batch (rivya_api.chat.redis_batch) when Redis fails: errors raised as the pipeline's
would be, the connection dropped, never left in use. (Its replies and per-turn errors against a live Redis,
both ways: test_resume.py.)"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from rivya_api.chat import redis_batch

COMMANDS = [("XADD", "rivya:chat:turn:x", "1-1", "d", "a"), ("SET", "alive", "1", "PX", 1000)]


async def silent_server() -> tuple[asyncio.AbstractServer, int, list]:
    """Answers the client's handshake (+OK to each command), then nothing once the batch comes."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                received.append(data)
                if b"XADD" not in b"".join(received):
                    writer.write(b"+OK\r\n" * data.count(b"*"))  # one reply per command (no * in their arguments)
        except (ConnectionError, asyncio.CancelledError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received


def test_a_silent_redis_times_the_whole_batch_out_and_drops_the_connection():
    async def run() -> None:
        server, port, received = await silent_server()
        client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool(port=port, max_connections=2))
        pool = client.connection_pool
        with pytest.raises(TimeoutError):
            await redis_batch.execute(client, COMMANDS, 0.3)
        assert b"".join(received).endswith(redis_batch.pack(COMMANDS))  # sent whole, in one buffer
        assert not pool._in_use_connections  # given back …
        assert all(not connection.is_connected for connection in pool._available_connections)  # … closed
        await client.aclose()
        server.close()

    asyncio.run(run())


def test_an_unreachable_redis_raises_the_clients_connection_error():
    async def run() -> None:
        server, port, _ = await silent_server()
        server.close()
        await server.wait_closed()
        client = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool(port=port, max_connections=2))
        with pytest.raises(RedisConnectionError):
            await redis_batch.execute(client, COMMANDS, 1)
        assert not client.connection_pool._in_use_connections
        await client.aclose()

    asyncio.run(run())
