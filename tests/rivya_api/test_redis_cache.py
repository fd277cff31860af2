"""The Redis cache backend shares one connection pool per process, even though ASGI gives each request its own cache."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from rivya_api.common.redis_cache import RedisCache

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
