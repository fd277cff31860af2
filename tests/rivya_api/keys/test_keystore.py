"""The shared key cache: hits skip the database; writers' markers keep stale copies out."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rivya_api.keys import fastpath, keystore
from rivya_api.keys.models import APIKey
from rivya_api.keys.services import api_key_revoke, api_key_roll
from rivya_api.keys.tokens import secret_generate, secret_hash

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"KEY_CACHE_SHARED_ONLY": False}})]


def lookup_counting_queries(key_hash: str):
    with CaptureQueriesContext(connection) as queries:
        key = keystore.key_lookup(key_hash)
    return key, len(queries)


def test_second_lookup_is_served_from_the_cache(api_key):
    key, secret = api_key
    found, queries = lookup_counting_queries(secret_hash(secret))
    assert (found, queries) == (key, 1)
    found, queries = lookup_counting_queries(secret_hash(secret))
    assert (found, queries) == (key, 0)
    assert found.account == key.account


def test_unknown_hashes_are_cached_too():
    unknown = secret_hash(secret_generate())  # fresh: Redis outlives test runs
    assert lookup_counting_queries(unknown) == (None, 1)
    assert lookup_counting_queries(unknown) == (None, 0)


def test_revoke_invalidates_and_a_late_reader_cannot_put_the_old_copy_back(api_key):
    key, secret = api_key
    key_hash = secret_hash(secret)
    keystore.key_lookup(key_hash)  # cached as active
    stale_copy = keystore._load(key_hash)  # a reader that loaded the row just before the revoke…
    api_key_revoke(api_key=key)
    cache = caches["default"]
    assert cache.add(keystore._cache_key(key_hash), stale_copy, 60) is False  # …cannot cache it
    found, queries = lookup_counting_queries(key_hash)
    assert found.status == "revoked"
    assert queries == 1  # while the marker lives, lookups read the row
    assert lookup_counting_queries(key_hash)[1] == 1


def test_roll_invalidates_the_old_key(api_key):
    key, secret = api_key
    keystore.key_lookup(secret_hash(secret))
    api_key_roll(api_key=key)
    assert keystore.key_lookup(secret_hash(secret)).status == "expired"


@pytest.mark.rivya_settings({"RIVYA_API": {"KEY_CACHE_SHARED_ONLY": True}})
def test_a_process_local_cache_is_not_used_for_keys(settings, api_key):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "t"}}
    _, secret = api_key
    assert keystore.key_cache() is None
    assert lookup_counting_queries(secret_hash(secret))[1] == 1
    assert lookup_counting_queries(secret_hash(secret))[1] == 1


def test_the_compiled_lookup_loads_what_the_orm_loads(api_key):
    """The fast path against the plain ORM query, on whichever database the suite runs."""
    key, secret = api_key
    api_key_revoke(api_key=key)  # a key with more than its defaults set (a timestamp, a status)
    expected = APIKey.objects.select_related("account").get(pk=key.pk)
    with CaptureQueriesContext(connection) as queries:
        found = fastpath.key_load(secret_hash(secret))
        account = found.account  # loaded with the key: no second query
    assert len(queries) == 1
    assert found is not expected
    for field in APIKey._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    for field in type(account)._meta.concrete_fields:
        assert getattr(account, field.attname) == getattr(expected.account, field.attname), field.name
    assert found.revoked_at.tzinfo is not None  # the database's converters ran
    assert found._state.adding is False
    assert found._state.db == expected._state.db


@pytest.mark.parametrize("compiled", [True, False])
def test_either_lookup_reads_the_row_every_time(api_key, rivya_settings, compiled):
    rivya_settings("RIVYA_API", KEY_LOOKUP_COMPILED=compiled)
    key, secret = api_key
    assert keystore._load(secret_hash(secret)).status == "active"
    APIKey.objects.filter(pk=key.pk).update(name="renamed")
    assert keystore._load(secret_hash(secret)).name == "renamed"
    assert keystore._load(secret_hash(secret_generate())) is None


@pytest.mark.parametrize("compiled", [True, False])
def test_the_setting_chooses_the_path(api_key, rivya_settings, monkeypatch, compiled):
    rivya_settings("RIVYA_API", KEY_LOOKUP_COMPILED=compiled, KEY_CACHE_SECONDS=0)
    calls: list[str] = []
    real = fastpath.key_load
    monkeypatch.setattr(fastpath, "key_load", lambda key_hash: calls.append(key_hash) or real(key_hash))
    key, secret = api_key
    assert keystore.key_lookup(secret_hash(secret)).pk == key.pk
    assert keystore.key_lookup(secret_hash(secret_generate())) is None
    assert len(calls) == (2 if compiled else 0)
