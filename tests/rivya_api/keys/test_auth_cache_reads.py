"""The failed-lookup counter and the key's cache entry read in one round trip, against two reads.

``RIVYA_API["AUTH_CACHE_READS_BATCHED"]`` (``rivya_api.keys.authentication._cache_reads``): both
settings must answer every request alike (guessing limit, key cache, revocation, a cache that is
down); on, a request reads both in one ``get_many`` and no ``get`` of either.
"""

from __future__ import annotations

import secrets

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from rivya_api.keys.services import api_key_revoke
from rivya_api.keys.tokens import secret_generate

pytestmark = [
    pytest.mark.django_db,
    # The key cache in use whatever the cache (LocMemCache on SQLite runs), so both reads exist;
    # the reads alone (test_onetrip.py has them joined by the rate-limit count on Redis).
    pytest.mark.rivya_settings(
        {"RIVYA_API": {"AUTH_FAILURE_LIMIT": "3/min", "KEY_CACHE_SHARED_ONLY": False, "RATE_LIMIT_IN_AUTH_TRIP": False}}
    ),
]


def fresh_address() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def get(address: str, secret: str):
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client.get("/api/v1/credits")


@pytest.fixture
def auth_reads(monkeypatch):
    """Every cache read of a failed-lookup counter or a key entry: ``("get" | "get_many", names)``."""
    reads: list[tuple[str, list[str]]] = []
    inside_get_many = []  # BaseCache.get_many (LocMemCache's) calls get per name
    cls = type(caches["default"])
    get, get_many = cls.get, cls.get_many

    def ours(names):
        return [name for name in names if "rivya_api:authfail:" in name or "rivya_api:apikey:v1:" in name]

    def counted_get(self, key, *args, **kwargs):
        if ours([key]) and not inside_get_many:
            reads.append(("get", [key]))
        return get(self, key, *args, **kwargs)

    def counted_get_many(self, keys, *args, **kwargs):
        if ours(keys):
            reads.append(("get_many", list(keys)))
        inside_get_many.append(True)
        try:
            return get_many(self, keys, *args, **kwargs)
        finally:
            inside_get_many.pop()

    monkeypatch.setattr(cls, "get", counted_get)
    monkeypatch.setattr(cls, "get_many", counted_get_many)
    return reads


@pytest.mark.parametrize("batched", [True, False])
def test_both_settings_answer_alike_and_on_reads_once(api_key, rivya_settings, auth_reads, batched):
    rivya_settings("RIVYA_API", AUTH_CACHE_READS_BATCHED=batched)
    key, good = api_key
    address = fresh_address()
    assert get(address, good).status_code == 200
    assert [kind for kind, _ in auth_reads] == (["get_many"] if batched else ["get", "get"])
    assert get(address, good).status_code == 200  # served from the key cache
    codes = [get(address, secret_generate()).json()["error"]["code"] for _ in range(2)]
    codes.append(get(address, "not-a-key").json()["error"]["code"])
    assert codes == ["invalid_api_key", "invalid_api_key", "invalid_api_key_format"]
    for secret in (secret_generate(), "not-a-key", good):  # past the limit: 429 whatever it sends
        response = get(address, secret)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "too_many_failed_authentications"
    elsewhere = fresh_address()
    assert get(elsewhere, good).status_code == 200
    api_key_revoke(api_key=key)
    response = get(elsewhere, good)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


@pytest.mark.parametrize("batched", [True, False])
def test_a_cache_that_is_down_reads_the_database(api_key, rivya_settings, monkeypatch, batched):
    rivya_settings("RIVYA_API", AUTH_CACHE_READS_BATCHED=batched)
    _, good = api_key

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    cls = type(caches["default"])
    for name in ("get", "get_many", "add", "set", "incr"):
        monkeypatch.setattr(cls, name, down)
    response = get(fresh_address(), good)
    assert response.status_code == 200
    assert response.json()["object"] == "credits"
