"""The rate limit's transaction sent directly (``rivya_api.keys.redis_direct``) against the plain path
through redis-py's pipeline (``RIVYA_API["RATE_LIMIT_REDIS_DIRECT"]``), on a real Redis.

Same counts, same TTL, a value Django's cache reads; any error falls back to the plain path; and the
API answers alike either way: rate-limit headers counting on from each other, a request refused by
its scopes not counted, a revoked key refused at once.
"""

from __future__ import annotations

import secrets

import pytest
import redis.client
import redis.exceptions
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.test import APIClient

from rivya_api.keys import redis_direct, throttling
from rivya_api.keys.services import api_key_revoke

pytestmark = pytest.mark.redis

CREDITS = "/api/v1/credits"


def test_incr_expire_counts_on_from_the_plain_increment_with_its_ttl(rivya_settings):
    cache, name = caches["default"], f"rivya-test:direct:counter:{secrets.token_hex(4)}"
    assert type(cache).__module__ == "rivya_api.common.redis_cache"  # the shared-pool backend
    counts = []
    for direct in (False, True, True, False, True):
        rivya_settings("RIVYA_API", RATE_LIMIT_REDIS_DIRECT=direct)
        counts.append(throttling.increment(name, 30))
    assert counts == [1, 2, 3, 4, 5]
    assert redis_direct.incr_expire(cache, name, 45) == 6
    client = cache._cache.get_client(write=True)
    assert 40 < client.ttl(cache.make_and_validate_key(name)) <= 45
    assert cache.get(name) == 6  # still what Django's cache reads as an int


def test_it_does_not_apply_off_or_on_another_cache(rivya_settings):
    cache = caches["default"]
    rivya_settings("RIVYA_API", RATE_LIMIT_REDIS_DIRECT=False)
    assert redis_direct.incr_expire(cache, "rivya-test:direct:off", 30) is None
    rivya_settings("RIVYA_API", RATE_LIMIT_REDIS_DIRECT=True)
    assert redis_direct.incr_expire(LocMemCache("direct-test", {}), "x", 30) is None


def test_an_error_drops_the_connection_and_leaves_it_to_the_plain_path(monkeypatch):
    cache = caches["default"]
    pool = cache._cache.get_client(write=True).connection_pool
    connection = pool.get_connection()
    pool.release(connection)
    dropped = []
    disconnect = type(connection).disconnect

    def broken(*args, **kwargs):
        raise redis.exceptions.ConnectionError("lost")

    monkeypatch.setattr(type(connection), "read_response", broken)
    monkeypatch.setattr(type(connection), "disconnect", lambda self, *a: dropped.append(self) or disconnect(self, *a))
    assert redis_direct.incr_expire(cache, "rivya-test:direct:broken", 30) is None
    assert dropped  # dropped, not handed out again mid-reply
    monkeypatch.undo()
    name = f"rivya-test:direct:wrongtype:{secrets.token_hex(4)}"
    cache.set(name, "not a number", 30)  # INCR refused inside the transaction
    assert redis_direct.incr_expire(cache, name, 30) is None
    with pytest.raises(redis.exceptions.ResponseError):
        throttling.increment(name, 30)  # the plain path's error, as before (the throttle logs it, lets through)
    assert cache.get(name) == "not a number"  # the pool still serves


@pytest.mark.django_db
@pytest.mark.parametrize("direct", [True, False])
def test_the_api_answers_alike(account, make_api_key, rivya_settings, monkeypatch, direct):
    rivya_settings("RIVYA_API", RATE_LIMIT_REDIS_DIRECT=direct, RATE_LIMIT="5/min")
    if direct:  # on, redis-py's pipeline is not used
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
