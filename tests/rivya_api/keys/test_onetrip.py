"""The key's cache reads and its rate-limit count in one Redis round trip, against two (``onetrip``).

``RIVYA_API["RATE_LIMIT_IN_AUTH_TRIP"]``: on and off must answer the same sequence of requests
alike (statuses, error codes, rate-limit headers, ``Retry-After``, the counts left in Redis); on,
an authenticated request makes one Redis round trip before its view, off two.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime

import pytest
import redis.client
import redis.connection
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.test import APIClient

from rivya_api.common.views import AccountScopedMixin
from rivya_api.keys import authentication, onetrip, throttling
from rivya_api.keys.services import api_key_revoke
from rivya_api.keys.tokens import secret_generate, secret_hash
from tests.rivya_api.keys import clock as clock_module

pytestmark = [pytest.mark.urls("tests.rivya_api.keys.urls"), pytest.mark.django_db]
on_redis = pytest.mark.skipif(
    not isinstance(caches["default"], RedisCache), reason="the one-trip path needs the cache on Redis"
)
# Failed lookups count in real time: an hour's window, so a run never straddles one.
CLOCKED = {**clock_module.CLOCKED, "RATE_LIMIT": "3/min", "AUTH_FAILURE_LIMIT": "3/hour"}


def fresh_address() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def client_for(secret: str, address: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def answer(response) -> tuple:
    """What a client sees of the limits: status, error code, the three headers, the retry delays."""
    body = response.json() if response["Content-Type"].startswith("application/json") else {}
    code = body.get("error", {}).get("code")
    names = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")
    return (
        response.status_code,
        code,
        tuple(response.get(name) for name in names),
        response.get("Retry-After"),
        response.get("retry-after-ms"),
    )


def count(key, window: int, window_start: int) -> int:
    """The key's counter as either path names it (only one exists per run: the keys are fresh)."""
    cache = caches["default"]
    by_hash = cache.get(f"rivya_api:ratelimit:h:{key.key_hash}:{window}:{window_start}")
    by_id = cache.get(f"rivya_api:ratelimit:{key.public_id}:{window}:{window_start}")
    return int(by_hash or 0) + int(by_id or 0)


def count_between(key, window: int, before: float, after: float) -> int:
    """The key's count in the real-time window(s) a request between ``before`` and ``after`` fell in."""
    starts = {int(moment // window) * window for moment in (before, after)}
    return sum(count(key, window, start) for start in starts)


def sequence(account, make_api_key, rivya_settings, *, on: bool) -> tuple[list[tuple], list[int]]:
    """The same requests under either setting: every answer, then every key's count per window."""
    rivya_settings("RIVYA_API", **CLOCKED, RATE_LIMIT_IN_AUTH_TRIP=on)
    clock = clock_module.clock
    start = (int(time.time()) // 60) * 60
    clock.now = datetime.fromtimestamp(start + 10, UTC)
    address = fresh_address()
    (a, a_secret), (b, b_secret), (c, c_secret) = (
        make_api_key(account),
        make_api_key(account, scopes=[]),  # every resource is a 403 for it; whoami takes any key
        make_api_key(account),
    )
    api_key_revoke(api_key=c)
    A, B, C = (client_for(secret, address) for secret in (a_secret, b_secret, c_secret))
    answers = [
        answer(A.get("/api/v1/credits")),
        answer(B.get("/api/v1/credits")),  # 403: refused before its throttle, not counted
        answer(B.get("/api/v1/credits")),
        answer(B.get("/api/v1/_test/whoami")),
        answer(C.get("/api/v1/credits")),  # revoked: 401, not counted
        answer(A.get("/api/v1/_test/unthrottled")),  # no throttle: not counted
        answer(A.get("/api/v1/_test/whoami")),
        answer(A.get("/api/v1/credits")),
        answer(A.get("/api/v1/credits")),  # the fourth: 429
        answer(client_for(secret_generate(), address).get("/api/v1/credits")),  # unknown: 401
    ]
    clock.now = datetime.fromtimestamp(start + 60 + 59.9995, UTC)  # the next window's last instant
    answers.append(answer(A.get("/api/v1/_test/whoami")))
    clock.now = datetime.fromtimestamp(start + 120, UTC)
    answers.append(answer(A.get("/api/v1/_test/whoami")))
    rivya_settings("RIVYA_API", RATE_LIMIT="2/10s")  # read per request
    answers += [answer(A.get("/api/v1/_test/whoami")) for _ in range(3)]
    for _ in range(3):  # the address past its failed-lookup limit: 429 whatever it sends
        client_for(secret_generate(), address).get("/api/v1/credits")
    answers.append(answer(A.get("/api/v1/credits")))
    answers.append(answer(B.get("/api/v1/_test/whoami")))
    counts = [count(key, 60, window) for key in (a, b, c) for window in (start, start + 60, start + 120)]
    counts += [count(key, 10, start + 120) for key in (a, b)]
    return answers, counts


def real_time_free(run: tuple[list[tuple], list[int]]) -> tuple[list[tuple], list[int]]:
    """``run`` without the failed-lookup 429s' Retry-After, the one answer taken from the real clock."""
    answers = [row[:3] + (None,) + row[4:] if row[1] == "too_many_failed_authentications" else row for row in run[0]]
    return answers, run[1]


@on_redis
def test_on_and_off_answer_a_sequence_alike(account, make_api_key, rivya_settings):
    on = sequence(account, make_api_key, rivya_settings, on=True)
    off = sequence(account, make_api_key, rivya_settings, on=False)
    # The failed-lookup limit counts in real time (see CLOCKED): its Retry-After is the real hour's
    # rest, which a second boundary between the two runs moves by one.
    for row_on, row_off in zip(on[0], off[0], strict=True):
        if row_on[1] == row_off[1] == "too_many_failed_authentications":
            assert abs(int(row_on[3]) - int(row_off[3])) <= 1
    assert real_time_free(on) == real_time_free(off)
    answers, counts = on
    assert answers[0][:3] == (200, None, ("3", "2", "50s"))
    assert [row[0] for row in answers[1:3]] == [403, 403]
    assert answers[3][2] == ("3", "2", "50s")  # B's 403s did not count
    assert answers[5][2] == (None, None, None)
    assert answers[8][:2] == (429, "rate_limit_exceeded")
    assert answers[8][3] == "50"
    assert answers[10][2] == ("3", "2", "1ms")  # counted in the window it began in
    assert [row[2][1] for row in answers[12:15]] == ["1", "0", "0"]
    assert answers[14][0] == 429
    assert answers[15][:2] == (429, "too_many_failed_authentications")
    # Per minute: A's fourth (the 429) counts, as before; B's 403s and C's 401 do not; A's and B's
    # 429s for the address's failed lookups do not either (given back on the one-trip path).
    assert counts == [4, 1, 1, 1, 0, 0, 0, 0, 0] + [3, 0]


@on_redis
def test_one_round_trip_before_the_view_on_two_off(api_key, rivya_settings, monkeypatch):
    trips: list[int] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self, *args, **kwargs):
        trips.append(1)
        return send(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    _, secret = api_key
    client = client_for(secret, fresh_address())
    seen = {}
    for on in (True, False, True, False):
        rivya_settings("RIVYA_API", RATE_LIMIT_IN_AUTH_TRIP=on)
        client.get("/api/v1/_test/whoami")  # the key's entry cached: every request below reads it
        trips.clear()
        assert client.get("/api/v1/_test/whoami").status_code == 200
        seen.setdefault(on, []).append(len(trips))
    assert seen == {True: [1, 1], False: [2, 2]}


@on_redis
def test_an_unknown_key_counts_for_nobody_and_the_count_expires(rivya_settings, monkeypatch):
    rivya_settings("RIVYA_API", RATE_LIMIT="3/min")
    decrs = []
    monkeypatch.setattr(redis.client.Redis, "eval", lambda self, *a, **k: decrs.append(a), raising=True)
    secret = secret_generate()
    before = time.time()
    response = client_for(secret, fresh_address()).get("/api/v1/credits")
    assert response.json()["error"]["code"] == "invalid_api_key"
    cache = caches["default"]
    starts = {int(moment // 60) * 60 for moment in (before, time.time())}
    names = [cache.make_and_validate_key(f"rivya_api:ratelimit:h:{secret_hash(secret)}:60:{s}") for s in starts]
    client = cache._cache.get_client(names[0], write=True)
    [name] = [name for name in names if client.exists(name)]
    assert client.get(name) == b"1"
    assert 0 < client.ttl(name) <= 61
    assert decrs == []  # nothing given back


@on_redis
def test_a_rate_limit_changed_between_authentication_and_throttle(api_client, rivya_settings, monkeypatch):
    """The throttle reads the setting again: another window, so it counts itself and the early count is given back."""
    monkeypatch.setattr(throttling, "parse_rate", lambda rate: (5, 10))  # onetrip still reads 1200/min
    before = time.time()
    response = api_client.get("/api/v1/_test/whoami")
    after = time.time()
    assert response.status_code == 200
    assert response["x-ratelimit-limit-requests"] == "5"
    assert response["x-ratelimit-remaining-requests"] == "4"
    key = api_client.api_key
    assert count_between(key, 10, before, after) == 1
    assert count_between(key, 60, before, after) == 0


@pytest.mark.parametrize("on", [True, False])
def test_a_cache_that_is_down_lets_the_request_through_and_logs(api_key, rivya_settings, monkeypatch, caplog, on):
    rivya_settings("RIVYA_API", RATE_LIMIT_IN_AUTH_TRIP=on, KEY_CACHE_SHARED_ONLY=False)

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    for name in ("get", "get_many", "add", "set", "incr"):
        monkeypatch.setattr(type(caches["default"]), name, down)
    monkeypatch.setattr(redis.client.Pipeline, "execute", down)
    _, secret = api_key
    with caplog.at_level(logging.WARNING):
        response = client_for(secret, fresh_address()).get("/api/v1/credits")
    assert response.status_code == 200
    assert "x-ratelimit-limit-requests" not in response
    assert "letting the request through" in caplog.text


def test_the_path_needs_redis_and_the_setting(rivya_settings):
    on_redis_now = isinstance(caches["default"], RedisCache)
    assert (onetrip.cache() is not None) == on_redis_now
    rivya_settings("RIVYA_API", RATE_LIMIT_IN_AUTH_TRIP=False)
    assert onetrip.cache() is None
    rivya_settings("RIVYA_API", RATE_LIMIT_IN_AUTH_TRIP=True, AUTH_CACHE_READS_BATCHED=False)
    assert onetrip.cache() is None


@on_redis
def test_session_authenticated_pages_are_untouched(member, monkeypatch):
    """Studio (the Django session, no API key) never enters key authentication: no count, no pipeline."""
    pipelines = []
    execute = redis.client.Pipeline.execute
    monkeypatch.setattr(redis.client.Pipeline, "execute", lambda self, *a, **k: pipelines.append(1) or execute(self))
    assert member.client.get("/studio/").status_code == 200
    assert pipelines == []


@on_redis
@pytest.mark.parametrize("on", [True, False])
def test_an_uncaught_error_after_counting_leaves_no_count(api_key, rivya_settings, monkeypatch, on):
    """A 500 in authentication after its round trip (the key's touch fails): its throttle never ran, so
    it counts nothing, as on the plain path. Catches giving the count back only in finalize_response,
    which DRF skips for an uncaught error (the count stayed: a database outage ate every key's limit)."""
    rivya_settings("RIVYA_API", RATE_LIMIT="3/min", RATE_LIMIT_IN_AUTH_TRIP=on)

    def touch_fails(**kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr(authentication, "api_key_touch", touch_fails)
    key, secret = api_key
    before = time.time()
    assert client_for(secret, fresh_address()).get("/api/v1/credits").status_code == 500
    assert count_between(key, 60, before, time.time()) == 0


@on_redis
def test_nothing_is_given_back_in_finalize_response(make_api_key, account, rivya_settings, monkeypatch):
    """``AsyncDispatch`` calls ``finalize_response`` on the event loop: by then every unused count must
    already be given back (a sync Redis call there would block the loop). A 403 for scope and a rate
    changed to another window in between. Catches giving back in finalize_response."""
    rivya_settings("RIVYA_API", RATE_LIMIT="3/min")
    left = []
    finalize = AccountScopedMixin.finalize_response

    def finalize_checked(self, request, response, *args, **kwargs):
        counted = onetrip._counted(request)
        left.append(counted is not None and not counted.taken)
        return finalize(self, request, response, *args, **kwargs)

    monkeypatch.setattr(AccountScopedMixin, "finalize_response", finalize_checked)
    key, secret = make_api_key(account, scopes=[])
    before = time.time()
    assert client_for(secret, fresh_address()).get("/api/v1/credits").status_code == 403
    assert count_between(key, 60, before, time.time()) == 0
    monkeypatch.setattr(throttling, "parse_rate", lambda rate: (5, 10))  # onetrip still reads 3/min
    assert client_for(secret, fresh_address()).get("/api/v1/_test/whoami").status_code in (200, 201)
    assert count_between(key, 60, before, time.time()) == 0
    assert left == [False, False]


def exists(name: str) -> bool:
    cache = caches["default"]
    key = cache.make_and_validate_key(name)
    return bool(cache._cache.get_client(key, write=True).exists(key))


@on_redis
def test_an_unknown_key_leaves_no_counter_for_a_long_window(rivya_settings):
    """With a day's window a random secret's counter would live a day: deleted, not left. Catches
    leaving nobody's counters to expire whatever the window (one Redis key per junk request per day)."""
    rivya_settings("RIVYA_API", RATE_LIMIT="3/day")
    secret = secret_generate()
    start = int(time.time() // 86400) * 86400
    response = client_for(secret, fresh_address()).get("/api/v1/credits")
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert not exists(f"rivya_api:ratelimit:h:{secret_hash(secret)}:86400:{start}")


@on_redis
def test_a_count_given_back_to_zero_leaves_no_counter(make_api_key, account, rivya_settings):
    """A 403 for scope gives its count back: the counter is deleted, not left at 0 with a day's TTL.
    Catches DECR + EXPIRE (a key per refused request kept for the window)."""
    rivya_settings("RIVYA_API", RATE_LIMIT="3/day")
    key, secret = make_api_key(account, scopes=[])
    start = int(time.time() // 86400) * 86400
    assert client_for(secret, fresh_address()).get("/api/v1/credits").status_code == 403
    assert not exists(f"rivya_api:ratelimit:h:{key.key_hash}:86400:{start}")


@on_redis
def test_giving_back_to_a_counter_that_expired_leaves_nothing():
    """The window rolled over and the counter expired before the give-back: DECR would recreate it at
    -1. Catches a plain DECR (+ EXPIRE): a negative counter left behind."""

    class Request:
        pass

    request = Request()
    name = f"rivya_api:ratelimit:h:{secrets.token_hex(32)}:60:0"
    request.__dict__[onetrip.ATTRIBUTE] = onetrip.Counted("h", name, 60, 0.0, 1)
    onetrip.release_unused(request)
    assert not exists(name)
