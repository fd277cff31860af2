"""Per-key rate limits: headers on every authenticated response, 429 with Retry-After, atomic counting."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from rivya_api.common.ratelimit import duration_text, rate_limit_state
from rivya_api.keys.throttling import APIKeyRateThrottle, parse_rate
from tests.rivya_api.keys import clock as clock_module

pytestmark = [pytest.mark.urls("tests.rivya_api.keys.urls"), pytest.mark.django_db]

URL = "/api/v1/_test/whoami"
TIGHT = {"RIVYA_API": {**clock_module.CLOCKED, "RATE_LIMIT": "3/min"}}


@pytest.fixture
def clock():
    """The injected clock, 10 seconds into a UTC minute (so the window resets in 50 s)."""
    clock_module.clock.now = datetime.fromtimestamp((int(time.time()) // 60) * 60 + 10, UTC)
    return clock_module.clock


def ratelimit_headers(response) -> tuple[str, str, str]:
    return (
        response["x-ratelimit-limit-requests"],
        response["x-ratelimit-remaining-requests"],
        response["x-ratelimit-reset-requests"],
    )


def test_default_limit_headers_on_every_authenticated_response(api_client):
    response = api_client.get(URL)
    assert response.status_code == 200
    limit, remaining, reset = ratelimit_headers(response)
    assert (limit, remaining) == ("1200", "1199")
    assert reset.endswith("s")
    post = api_client.post(URL, {}, format="json")
    assert post.status_code == 201
    assert ratelimit_headers(post)[1] == "1198"


@pytest.mark.rivya_settings(TIGHT)
def test_over_the_limit_is_429_with_retry_after_then_the_window_resets(api_client, clock):
    seen = [ratelimit_headers(api_client.get(URL)) for _ in range(3)]
    assert seen == [("3", "2", "50s"), ("3", "1", "50s"), ("3", "0", "50s")]
    clock.advance(seconds=20)
    response = api_client.get(URL)
    assert response.status_code == 429
    body = response.json()
    assert set(body["error"]) == {"type", "code", "message", "param", "request_id"}
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert response["Retry-After"] == "30"
    assert response["retry-after-ms"] == "30000"
    assert ratelimit_headers(response) == ("3", "0", "30s")
    clock.advance(seconds=30)
    response = api_client.get(URL)
    assert response.status_code == 200
    assert ratelimit_headers(response) == ("3", "2", "1m0s")


@pytest.mark.rivya_settings(TIGHT)
def test_limits_are_per_key(account, make_api_client, clock):
    first, second = make_api_client(account), make_api_client(account)
    for _ in range(3):
        assert first.get(URL).status_code == 200
    assert first.get(URL).status_code == 429
    response = second.get(URL)
    assert response.status_code == 200
    assert response["x-ratelimit-remaining-requests"] == "2"


@pytest.mark.rivya_settings({"RIVYA_API": {**clock_module.CLOCKED, "RATE_LIMIT": "2/10s"}})
def test_sub_second_retry_after_in_ms(api_client, clock):
    clock.now = datetime.fromtimestamp((int(time.time()) // 10) * 10 + 9.75, UTC)
    api_client.get(URL)
    api_client.get(URL)
    response = api_client.get(URL)
    assert response.status_code == 429
    assert response["retry-after-ms"] == "250"
    assert response["Retry-After"] == "1"
    assert response["x-ratelimit-reset-requests"] == "250ms"


@pytest.mark.rivya_settings({"RIVYA_API": {"RATE_LIMIT": "off"}})
def test_limit_can_be_switched_off(api_client):
    response = api_client.get(URL)
    assert response.status_code == 200
    assert "x-ratelimit-limit-requests" not in response


def test_unauthenticated_responses_carry_no_rate_limit_headers(client):
    assert "x-ratelimit-limit-requests" not in client.get(URL)


@pytest.mark.rivya_settings({"RIVYA_API": {"RATE_LIMIT": "30/hour"}})
def test_counting_is_atomic_under_concurrent_requests(api_key):
    """40 threads released together against a limit of 30: exactly 30 get through."""
    key, _ = api_key
    barrier = threading.Barrier(40)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hit() -> None:
        request = SimpleNamespace(auth=key)
        throttle = APIKeyRateThrottle()
        barrier.wait()
        result = throttle.allow_request(request, None)
        with lock:
            allowed.append(result)

    threads = [threading.Thread(target=hit) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(allowed) == 40
    assert allowed.count(True) == 30
    request = SimpleNamespace(auth=key)
    APIKeyRateThrottle().allow_request(request, None)
    assert rate_limit_state(request).remaining == 0


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [
        ("1200/min", (1200, 60)),
        ("50/10s", (50, 10)),
        ("5/second", (5, 1)),
        ("100/hour", (100, 3600)),
        ("7/days", (7, 86400)),
        (" 10 / 2m ", (10, 120)),
        ("off", None),
        ("", None),
    ],
)
def test_parse_rate(rate, parsed):
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["1200", "0/min", "10/fortnight", "ten/min"])
def test_parse_rate_rejects_nonsense(rate):
    with pytest.raises(ValueError, match="RATE_LIMIT"):
        parse_rate(rate)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.012, "12ms"), (0.9996, "1s"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"), (3725, "1h2m5s")]
)
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


def test_a_nonsense_rate_limit_fails_the_system_checks(rivya_settings):
    from rivya_api.checks import check_rate_limit

    assert check_rate_limit() == []
    rivya_settings("RIVYA_API", RATE_LIMIT="lots")
    assert [error.id for error in check_rate_limit()] == ["rivya_api.E002"]
