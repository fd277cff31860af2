"""Authentication's and the rate limit's Redis commands sent on a connection of the cache's shared pool.

Every authenticated request reads the key's cache entry with the address's failed-lookup counter
(one MGET) and adds one to the key's rate-limit counter (MULTI, INCR, EXPIRE, EXEC). Through
Django's cache and redis-py's command machinery (a client call, its retry wrapper, the
pipeline's per-command bookkeeping) those two round trips cost about twice what sending them
does (``bench/credits_get.py --switch RIVYA_API.AUTH_REDIS_DIRECT``). Here the same commands, with
the same key names (``make_and_validate_key``) and the same values (the cache client's own
serializer), are packed by the connection and sent on a connection of the pool
``rivya_api.common.redis_cache`` shares, and their replies read off it.

Only that shared-pool backend takes this path (no other cache, no client-side caching pool); the
callers run the plain path where a function returns None. Any error on the way (a connection
lost, a timeout, an error reply) drops the connection and returns None, so the plain path runs
the same commands again with its own retries, errors and logging, as redis-py's retry would.
``RIVYA_API["AUTH_REDIS_DIRECT"] = False``: always the plain path.
``tests/rivya_api/keys/test_redis_direct.py`` compares the two against a real Redis.
"""

from __future__ import annotations

from typing import Any

from rivya_api.conf import api_settings


def _shared_client(cache: Any) -> Any | None:
    """The cache's ``SharedPoolRedisCacheClient`` when this path applies, else None."""
    if not api_settings.AUTH_REDIS_DIRECT:
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


def get_many(cache: Any, names: list[str]) -> dict[str, Any] | None:
    """What ``cache.get_many(names)`` returns, in one MGET; None: run ``cache.get_many``."""
    client = _shared_client(cache)
    if client is None:
        return None
    keys = [cache.make_and_validate_key(name) for name in names]
    replies = _send(client.get_client(write=False), [("MGET", *keys)])
    if replies is None:
        return None
    loads = client._serializer.loads
    return {name: loads(value) for name, value in zip(names, replies[0], strict=True) if value is not None}


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
