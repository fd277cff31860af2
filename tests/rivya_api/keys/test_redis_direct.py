"""Authentication's MGET and the rate limit's INCR sent directly (``rivya_api.keys.redis_direct``) against the
plain path through Django's cache and redis-py (``RIVYA_API["AUTH_REDIS_DIRECT"]``), on a real Redis.

Same values read, same counts, same TTL; any error falls back to the plain path; and the API answers
alike either way: rate-limit headers counting on from each other, a revoked key refused at once, a
request refused by its scopes not counted.
"""

from __future__ import annotations

import secrets

import pytest
import redis.client
import redis.exceptions
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.test import APIClient

from rivya_api.common.redis_cache import RedisCache
from rivya_api.keys import redis_direct, throttling
from rivya_api.keys.services import api_key_revoke

pytestmark = pytest.mark.redis

CREDITS = "/api/v1/credits"


def names() -> list[str]:
    stem = f"rivya-test:direct:{secrets.token_hex(4)}"
    cache = caches["default"]
    cache.set(f"{stem}:object", {"a": [1, "b"]}, 30)
    cache.set(f"{stem}:int", 7, 30)
    return [f"{stem}:object", f"{stem}:missing", f"{stem}:int"]


def test_get_many_reads_what_the_cache_reads(monkeypatch):
    cache = caches["default"]
    assert isinstance(cache, RedisCache)
    wanted = names()
    plain = cache.get_many(wanted)
    monkeypatch.setattr(type(cache), "get_many", None)  # the direct path does not go through it
    assert redis_direct.get_many(cache, wanted) == plain == {wanted[0]: {"a": [1, "b"]}, wanted[2]: 7}


def test_incr_expire_counts_on_from_the_plain_increment_with_its_ttl(rivya_settings):
    cache, name = caches["default"], f"rivya-test:direct:counter:{secrets.token_hex(4)}"
    counts = []
    for direct in (False, True, True, False, True):
        rivya_settings("RIVYA_API", AUTH_REDIS_DIRECT=direct)
        counts.append(throttling.increment(name, 30))
    assert counts == [1, 2, 3, 4, 5]
    assert redis_direct.incr_expire(cache, name, 45) == 6
    client = cache._cache.get_client(write=True)
    assert 40 < client.ttl(cache.make_and_validate_key(name)) <= 45
    assert cache.get(name) == 6  # still what Django's cache reads as an int


def test_it_does_not_apply_off_or_on_another_cache(rivya_settings):
    cache = caches["default"]
    rivya_settings("RIVYA_API", AUTH_REDIS_DIRECT=False)
    assert redis_direct.get_many(cache, names()) is None
    assert redis_direct.incr_expire(cache, "rivya-test:direct:off", 30) is None
    rivya_settings("RIVYA_API", AUTH_REDIS_DIRECT=True)
    other = LocMemCache("direct-test", {})
    assert redis_direct.get_many(other, ["x"]) is None
    assert redis_direct.incr_expire(other, "x", 30) is None


def test_an_error_drops_the_connection_and_leaves_it_to_the_plain_path(monkeypatch):
    cache, wanted = caches["default"], names()
    pool = cache._cache.get_client(write=True).connection_pool
    connection = pool.get_connection()
    pool.release(connection)
    dropped = []
    disconnect = type(connection).disconnect

    def broken(*args, **kwargs):
        raise redis.exceptions.ConnectionError("lost")

    monkeypatch.setattr(type(connection), "read_response", broken)
    monkeypatch.setattr(type(connection), "disconnect", lambda self, *a: dropped.append(self) or disconnect(self, *a))
    assert redis_direct.get_many(cache, wanted) is None
    assert redis_direct.incr_expire(cache, "rivya-test:direct:broken", 30) is None
    assert dropped  # dropped, not handed out again mid-reply (the second call fails in its connect)
    monkeypatch.undo()
    name = f"rivya-test:direct:wrongtype:{secrets.token_hex(4)}"
    cache.set(name, "not a number", 30)  # INCR refused inside the transaction
    assert redis_direct.incr_expire(cache, name, 30) is None
    assert redis_direct.get_many(cache, [name]) == {name: "not a number"}  # the pool still serves


@pytest.mark.django_db
@pytest.mark.parametrize("direct", [True, False])
def test_the_api_answers_alike(account, make_api_key, rivya_settings, monkeypatch, direct):
    rivya_settings("RIVYA_API", AUTH_REDIS_DIRECT=direct, RATE_LIMIT="5/min")
    if direct:  # on, neither the cache's get_many nor redis-py's pipeline is used
        monkeypatch.setattr(type(caches["default"]), "get_many", None)
        monkeypatch.setattr(redis.client.Pipeline, "execute", None)  # the throttle would let requests through
    key, secret = make_api_key(account, scopes=["credits:read"])
    client = APIClient(REMOTE_ADDR=f"2001:db8::{secrets.token_hex(2)}")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    remaining = [client.get(CREDITS)["x-ratelimit-remaining-requests"] for _ in range(2)]
    refused = client.patch(f"{CREDITS}/alerts", {"low_balance_threshold": 5}, format="json")  # credits:write
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope")
    remaining += [client.get(CREDITS)["x-ratelimit-remaining-requests"] for _ in range(3)]
    assert remaining == ["4", "3", "2", "1", "0"]  # the refused request was not counted
    assert client.get(CREDITS).status_code == 429
    api_key_revoke(api_key=key)
    response = client.get(CREDITS)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "api_key_revoked")
