"""The chat mirror's batch of writes sent to Redis as one packed buffer, its replies read under one timeout.

redis-py's pipeline packs every command through its encoder (a list of pieces per argument) and
reads every reply inside its own ``asyncio.timeout`` (the client's ``socket_timeout``): at 4,000
mirrored events a second that was most of the mirror's CPU, which is most of what production adds
to a relayed chunk. ``execute`` packs the batch's commands (RESP, every argument a bulk string)
in one pass, sends them with one ``send_packed_command`` on a connection of the client's pool,
and reads the replies with ``read_response(timeout=math.inf)`` (redis-py's documented "no timeout
of its own") inside one timeout for the whole batch. Each command's reply, or its error
(``ResponseError``), is returned in order, as ``pipeline.execute(raise_on_error=False)`` returns
them; a connection error, a timeout or a cancellation disconnects the connection and is raised.

Used by ``streams.MirrorWriter`` unless ``RIVYA_API["CHAT_STREAM_MIRROR_PACKED"]`` is False, which
sends the same commands through redis-py's pipeline. ``tests/rivya_api/chat/test_resume.py``
mirrors the same turns both ways.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any


def _bulk(value: Any) -> bytes:
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(commands: list[tuple]) -> bytes:
    """The RESP of ``commands`` (each a tuple of arguments: str, bytes or int)."""
    return b"".join(b"*%d\r\n" % len(args) + b"".join(map(_bulk, args)) for args in commands)


async def execute(client: Any, commands: list[tuple], timeout: float | None) -> list[Any]:
    """Send ``commands`` on one connection of ``client``'s pool; their replies (or errors), in order."""
    from redis.exceptions import ResponseError  # Redis is an optional dependency of the apps

    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        async with asyncio.timeout(timeout):
            await connection.send_packed_command(pack(commands), check_health=False)
            results: list[Any] = []
            for _ in commands:
                try:
                    results.append(await connection.read_response(timeout=math.inf))
                except ResponseError as error:
                    results.append(error)
        return results
    except BaseException:
        await connection.disconnect(nowait=True)  # mid-reply: the connection cannot be reused
        raise
    finally:
        await pool.release(connection)
