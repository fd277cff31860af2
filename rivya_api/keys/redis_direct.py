"""The rate limit's Redis transaction sent on a connection of the cache's shared pool.

Every request with a key adds one to its rate-limit counter (MULTI, INCR, EXPIRE, EXEC: one
round trip). Through redis-py's pipeline (its per-command bookkeeping, the transaction's
parsing, the retry wrapper) that cost about 0.08 ms of CPU a request, sending it directly about 0.055
(the throttle's own thread CPU, interleaved on/off rounds of ``bench/credits_get.py``). Here
the same commands, with the same key name (``make_and_validate_key``), are packed by the
connection and sent on a connection of the pool ``rivya_api.common.redis_cache`` shares, and
their four replies read off it. (Authentication's MGET went the same way and was measured: it
did not pay, so it still goes through Django's cache.)

Only that shared-pool backend takes this path (no other cache, no client-side caching pool);
``throttling.increment`` runs the plain path where ``incr_expire`` returns None. Any error on
the way (a connection lost, a timeout, an error reply) drops the connection and returns None,
so the plain path runs the transaction again with its own retries, errors and logging, as
redis-py's retry would. ``RIVYA_API["RATE_LIMIT_REDIS_DIRECT"] = False``: always the plain
path. ``tests/rivya_api/keys/test_redis_direct.py`` compares the two against a real Redis.
"""

from __future__ import annotations

from typing import Any

from rivya_api.conf import api_settings


def _shared_client(cache: Any) -> Any | None:
    """The cache's ``SharedPoolRedisCacheClient`` when this path applies, else None."""
    if not api_settings.RATE_LIMIT_REDIS_DIRECT:
        return None
    from rivya_api.common.redis_cache import RedisCache, SharedPoolRedisCacheClient

    if not isinstance(cache, RedisCache):
        return None
    client = cache._cache
    return client if isinstance(client, SharedPoolRedisCacheClient) else None


def _send(redis_client: Any, commands: list[tuple]) -> list[Any] | None:
    """``commands``' replies, in order, from one connection of ``redis_client``'s pool; None on any error."""
    pool = redis_client.connection_pool
    if getattr(pool, "cache", None) is not None:  # client-side caching: redis-py's path keeps it right
        return None
    try:
        connection = pool.get_connection()
    except Exception:
        return None
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        return [connection.read_response() for _ in commands]
    except Exception:
        connection.disconnect()  # mid-reply or refused: this connection cannot be reused
        return None
    finally:
        pool.release(connection)


def incr_expire(cache: Any, name: str, ttl: int) -> int | None:
    """Add one to the counter ``name`` with ``ttl`` seconds to live, as one transaction; the new
    count. None: run the plain path (``rivya_api.keys.throttling.increment``)."""
    client = _shared_client(cache)
    if client is None:
        return None
    key = cache.make_and_validate_key(name)
    replies = _send(client.get_client(key, write=True), [("MULTI",), ("INCR", key), ("EXPIRE", key, ttl), ("EXEC",)])
    if replies is None or not isinstance(replies[-1], list) or isinstance(replies[-1][0], Exception):
        return None  # an INCR refused inside the transaction: the plain path raises its error
    return int(replies[-1][0])
