"""The Redis cache backend shares one connection pool per process, even though ASGI gives each request its own cache."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCacheClient

from rivya_api.common.redis_cache import RedisCache, SharedPoolRedisCacheClient

pytestmark = pytest.mark.redis


def test_every_async_context_gets_its_own_cache_object_but_one_pool(settings):
    assert settings.CACHES["default"]["BACKEND"] == "rivya_api.common.redis_cache.RedisCache"

    def cache_of_a_new_request():
        # What caches["default"] does in a fresh async context: a new backend object.
        return caches.create_connection("default")

    first, second = cache_of_a_new_request(), cache_of_a_new_request()
    assert first is not second
    assert isinstance(first, RedisCache)
    assert first._cache._get_connection_pool(True) is second._cache._get_connection_pool(True)
    assert first._cache.get_client(write=True) is second._cache.get_client(write=True)  # one client, too
    first.set("rivya-test:shared-pool", 7, 30)
    assert second.get("rivya-test:shared-pool") == 7
    pool = first._cache._get_connection_pool(True)
    created = pool._created_connections
    for _ in range(20):
        cache_of_a_new_request().get("rivya-test:shared-pool")
    assert pool._created_connections == created  # no new connection per request
    second.delete("rivya-test:shared-pool")


def cache_calls(cache) -> list:
    """The cache calls the project makes (keys, rate limits, idempotency), and what each returns."""
    key = "rivya-test:compare"
    cache.delete_many([key, key + ":n", key + ":m"])
    results = [
        cache.add(key, {"a": 1}, 30),
        cache.add(key, "other", 30),  # set-if-absent refuses
        cache.get(key),
        cache.set(key + ":n", 1, 30),
        cache.incr(key + ":n", 5),
        cache.get_many([key, key + ":n", key + ":m"]),
        cache.touch(key, 60),
        cache.delete(key),
        cache.get(key, "gone"),
        cache.has_key(key + ":n"),
    ]
    cache.delete_many([key + ":n"])
    return results


def plain_options(pool) -> dict:
    """A pool's connection options that are values (server, db, timeouts, parser), not per-pool objects."""
    values = (str, int, float, type, type(None))
    return {name: value for name, value in pool.connection_kwargs.items() if isinstance(value, values)}


def test_the_shared_pool_gives_what_djangos_client_gives(rivya_settings):
    rivya_settings("RIVYA_API", REDIS_CACHE_SHARED_POOL=False)
    plain = caches.create_connection("default")
    assert type(plain._cache) is RedisCacheClient
    rivya_settings("RIVYA_API", REDIS_CACHE_SHARED_POOL=True)
    shared = caches.create_connection("default")
    assert type(shared._cache) is SharedPoolRedisCacheClient

    assert cache_calls(shared) == cache_calls(plain)
    assert shared._cache.get_client(write=True) is caches.create_connection("default")._cache.get_client(write=True)
    # The client it shares is the one Django's own would build: same class, same server and pool options.
    ours, djangos = shared._cache.get_client(write=True), plain._cache.get_client(write=True)
    assert type(ours) is type(djangos)
    assert plain_options(ours.connection_pool) == plain_options(djangos.connection_pool)
    assert type(ours.connection_pool) is type(djangos.connection_pool)
