"""A chat turn's credits pre-check from the key's funds hint (``rivya_api.chat.funds_hint``) against the SELECT.

``RIVYA_API["CHAT_FUNDS_HINT"]``: on and off must answer the same turns alike (statuses, codes,
bodies, the ledger's lines and the wallet); on, a turn whose hint covers its price reads no wallet
before the model is called, and a hint that says more than the wallet holds still ends in the
commit's 402 with nothing held or charged.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rivya_api.catalog.selectors import catalog_model_get
from rivya_api.chat import funds_hint, services
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.chat.services import NewMessage
from rivya_api.keys.services import CreditLimit
from rivya_billing import selectors as billing_selectors
from rivya_billing import services as billing
from rivya_billing.selectors import wallet_entries, wallet_get

pytestmark = pytest.mark.django_db(transaction=True)
ON_THE_PATH = connection.vendor == "postgresql" and isinstance(caches["default"], RedisCache)
# Elsewhere (SQLite, no Redis) the plain path runs: the tests without this mark check that too.


def hinted(test):
    """A test of the hint itself: PostgreSQL and Redis (a missing service fails under RIVYA_TEST_REQUIRE_SERVICES)."""
    for mark in (
        pytest.mark.postgres,
        pytest.mark.redis,
        pytest.mark.skipif(not ON_THE_PATH, reason="the funds hint needs PostgreSQL and the key cache on Redis"),
    ):
        test = mark(test)
    return test


MODEL = "rivya-chat-priced"  # the tests' local model at a price where every token counts
BIG, SMALL = 300, 10  # max_tokens of a turn: its hold is about 300 and about 10 credits


def turn(client, max_tokens: int = BIG):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Price me"}], "max_tokens": max_tokens}
    return client.post("/api/v1/chat/completions", body, format="json")


def answer(response) -> tuple:
    """What the client sees of a turn, but its ids: status, error code and message, or reply and usage."""
    body = response.json()
    if "error" in body:
        return response.status_code, body["error"]["code"], body["error"]["message"]
    return response.status_code, body["choices"][0]["message"]["content"], body["usage"]


def money(account) -> tuple:
    """The account's ledger lines (type, amount, balances after) in order, and its wallet."""
    entries = reversed(list(wallet_entries(account=account)))
    lines = [(entry.type, entry.amount, entry.balance_after, entry.held_after) for entry in entries]
    wallet = wallet_get(account=account)
    return lines, (wallet.balance, wallet.held)


def hold_price(account, max_tokens: int = BIG) -> int:
    model = catalog_model_get(MODEL)
    messages = [NewMessage(role="user", text="Price me")]
    plan = services.chat_turn_prepare(
        account=account, model=model, messages=messages, max_output_tokens=max_tokens, funds_hint=2**62
    )
    return plan.credits_reserved


def spend_elsewhere(account, *, leave: int, reference: str) -> None:
    """Another spender (Studio, a generation) takes all but ``leave`` of what is available."""
    available = billing_selectors.credits_available(account=account)
    billing.credits_reserve(account=account, amount=available - leave, reference=reference)
    billing.credits_settle(account=account, reference=reference, amount=available - leave)


def sequence(make_account, make_api_client, rivya_settings, *, on: bool) -> tuple[list[tuple], tuple, tuple]:
    """The same turns under either setting: every answer, then the ledgers of both accounts."""
    rivya_settings("RIVYA_API", CHAT_FUNDS_HINT=on)
    account = make_account()
    billing.credits_grant(account=account, amount=1_000, reference="grant")
    price = hold_price(account)
    client = make_api_client(account)
    answers = [answer(turn(client)), answer(turn(client))]  # affordable: the second on a fresh hint (on)
    spend_elsewhere(account, leave=price - 1, reference="studio-1")
    answers.append(answer(turn(client)))  # the hint says more than the wallet holds: 402
    answers.append(answer(turn(client, SMALL)))  # affordable: its finish leaves a hint below the price
    answers.append(answer(turn(client)))  # the hint says too little, and so does the wallet: 402
    billing.credits_grant(account=account, amount=1_000, reference="top-up")
    answers.append(answer(turn(client)))  # the hint says too little, the wallet (topped up) enough
    answers.append(answer(turn(client)))
    # A key with a spend limit: refused for its limit, then for want of credits (the pre-check's answer).
    limited = make_api_client(account, credit_limit=CreditLimit(credits=price, window="total"))
    answers += [answer(turn(limited)), answer(turn(limited))]
    spend_elsewhere(account, leave=price - 1, reference="studio-2")
    answers += [answer(turn(limited)), answer(turn(client))]
    events = [event.type for event in _events(account)]
    return answers, money(account), tuple(events)


def _events(account):
    from rivya_webhooks.models import WebhookEvent

    return WebhookEvent.objects.filter(account=account).order_by("pk")


def test_the_same_turns_answer_alike_with_the_hint_on_and_off(make_account, make_api_client, rivya_settings, upstream):
    on = sequence(make_account, make_api_client, rivya_settings, on=True)
    off = sequence(make_account, make_api_client, rivya_settings, on=False)
    assert on == off
    statuses = [row[0] for row in on[0]]
    assert statuses == [200, 200, 402, 200, 402, 200, 200, 200, 402, 402, 402]
    codes = [row[1] for row in on[0] if row[0] == 402]
    assert codes == ["insufficient_credits"] * 2 + ["key_credit_limit_reached"] + ["insufficient_credits"] * 2
    assert on[2] == ("key.credit_limit_reached",)  # announced once, for the limit's own refusal


def count_prechecks(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = billing_selectors.credits_available

    def counted(*, account):
        calls.append(1)
        return real(account=account)

    monkeypatch.setattr(billing_selectors, "credits_available", counted)
    return calls


@pytest.mark.parametrize("on", [True, False])
def test_a_fresh_hint_saves_the_pre_checks_read(
    make_account, make_api_client, rivya_settings, upstream, monkeypatch, on
):
    rivya_settings("RIVYA_API", CHAT_FUNDS_HINT=on)
    other = make_account()  # another tenant's wallet: never the hint of this account's key
    billing.credits_grant(account=other, amount=7, reference="grant")
    account = make_account()
    billing.credits_grant(account=account, amount=10_000, reference="grant")
    client = make_api_client(account)
    calls = count_prechecks(monkeypatch)
    assert turn(client).status_code == 200
    assert len(calls) == 1  # no hint yet: the wallet is read
    hinted = on and ON_THE_PATH  # SQLite, or a cache not on Redis: the plain path
    assert funds_hint.enabled() == hinted
    hint = caches["default"].get(funds_hint.name(client.api_key.key_hash))
    assert hint == (billing_selectors.credits_available(account=account) if hinted else None)
    calls.clear()
    assert turn(client).status_code == 200
    assert len(calls) == (0 if hinted else 1)


def test_the_pre_check_makes_no_query_with_a_covering_hint(make_account, upstream):
    account = make_account()
    billing.credits_grant(account=account, amount=10_000, reference="grant")
    model, messages = catalog_model_get(MODEL), [NewMessage(role="user", text="Price me")]
    price = hold_price(account)
    for hint, queries in ((10_000, 0), (price, 0), (price - 1, 1), (None, 1), (1, 1), (-5, 1)):
        with CaptureQueriesContext(connection) as captured:
            services.chat_turn_prepare(
                account=account, model=model, messages=messages, max_output_tokens=BIG, funds_hint=hint
            )
        assert len(captured.captured_queries) == queries, (hint, captured.captured_queries)


@hinted
def test_a_stale_high_hint_ends_in_a_clean_402(make_account, make_api_client, upstream, monkeypatch):
    account = make_account()
    billing.credits_grant(account=account, amount=50, reference="grant")
    client = make_api_client(account)
    caches["default"].set(funds_hint.name(client.api_key.key_hash), 10**9, funds_hint.HINT_SECONDS)
    before = money(account)
    calls = count_prechecks(monkeypatch)
    response = turn(client)
    assert response.status_code == 402, response.content
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert f"{hold_price(account)} credits" in error["message"]
    assert "50 are available" in error["message"]
    assert calls == []  # the pre-check trusted the hint: the commit refused
    assert money(account) == before  # nothing held, released or charged
    assert not ChatMessage.objects.filter(session__account=account).exists()
    assert not ChatSession.objects.filter(account=account).exists()


@hinted
def test_a_stale_high_hint_ends_a_stream_in_a_402_before_it_starts(
    make_account, make_api_key, live_server_url, upstream
):
    account = make_account()
    billing.credits_grant(account=account, amount=50, reference="grant")
    key, secret = make_api_key(account)
    caches["default"].set(funds_hint.name(key.key_hash), 10**9, funds_hint.HINT_SECONDS)
    before = money(account)
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "x"}], "max_tokens": BIG}
    headers = {"Authorization": f"Bearer {secret}"}
    response = httpx.post(f"{live_server_url}/api/v1/chat/completions", json=body, headers=headers, timeout=20)
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert money(account) == before
    assert not ChatSession.objects.filter(account=account).exists()


@hinted
def test_a_redis_error_falls_back_to_the_wallet(make_account, make_api_client, upstream, monkeypatch):
    account = make_account()
    billing.credits_grant(account=account, amount=10_000, reference="grant")
    client = make_api_client(account)
    assert turn(client).status_code == 200  # a hint is set
    calls = count_prechecks(monkeypatch)
    cache = caches["default"]

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache._cache, "get_client", down)  # the MGET (one trip or not) and the hint's SET
    monkeypatch.setattr(cache, "get_many", down)
    response = turn(client)
    assert response.status_code == 200, response.content
    assert len(calls) == 1


@hinted
def test_only_the_chat_view_reads_the_hint(rivya_settings):
    from rivya_api.chat.views import ChatCompletionsView
    from rivya_api.keys.authentication import view_cache_read

    class Request:
        def __init__(self, view):
            self.parser_context = {"view": view}

    request = Request(ChatCompletionsView())
    entry, take = view_cache_read(request, "a" * 64)
    assert entry == funds_hint.name("a" * 64)
    take(7)
    assert request.__dict__[funds_hint.ATTRIBUTE] == 7
    assert view_cache_read(Request(object()), "a" * 64) is None
    rivya_settings("RIVYA_API", CHAT_FUNDS_HINT=False)
    assert view_cache_read(Request(ChatCompletionsView()), "a" * 64) is None


@hinted
def test_concurrent_streams_on_a_stale_high_hint_keep_the_ledger_whole(
    make_account, make_api_key, live_server_url, upstream
):
    """Eight streamed turns of one key at once on a wallet that pays for three, the hint saying it pays
    for all: each answered 200 or 402, a 200 per settled hold, nothing left held, the ledger balanced."""
    account = make_account()
    billing.credits_grant(account=account, amount=1_000_000, reference="grant")
    price = hold_price(account, SMALL)
    spend_elsewhere(account, leave=3 * price, reference="studio")
    key, secret = make_api_key(account)
    caches["default"].set(funds_hint.name(key.key_hash), 10**9, funds_hint.HINT_SECONDS)
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Price me"}]}
    body["max_tokens"] = SMALL
    barrier, statuses = threading.Barrier(8), []

    def stream() -> None:
        barrier.wait()
        with httpx.Client() as client:
            response = client.post(
                f"{live_server_url}/api/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=stream) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200, 402}
    settled = billing_selectors.wallet_holds(account=account, state="settled").exclude(reference="studio").count()
    assert statuses.count(200) == settled
    assert wallet_get(account=account).held == 0
    checks = list(billing_selectors.ledger_check(wallet_ids=[wallet_get(account=account).pk]))
    assert all(check.ok for check in checks), [check.problems for check in checks]


@hinted
def test_a_refused_commit_lowers_the_hint(make_account, make_api_client, upstream, monkeypatch):
    """A stale-high hint costs one wasted model request, not one per turn for ``HINT_SECONDS``: the
    commit's 402 leaves the wallet's available as the hint, so the next turn's pre-check reads the wallet."""
    account = make_account()
    billing.credits_grant(account=account, amount=50, reference="grant")
    client = make_api_client(account)
    entry = funds_hint.name(client.api_key.key_hash)
    caches["default"].set(entry, 10**9, funds_hint.HINT_SECONDS)
    calls = count_prechecks(monkeypatch)
    assert turn(client).status_code == 402
    assert calls == []  # refused by the commit
    assert caches["default"].get(entry) == 50
    second = turn(client)
    assert second.status_code == 402
    assert len(calls) == 1  # refused by the pre-check, before the model is called
    other = make_api_client(account)  # another key of the account: its own hint, untouched
    assert caches["default"].get(funds_hint.name(other.api_key.key_hash)) is None


@hinted
@pytest.mark.parametrize("rate_limit", ["1200/min", "off"])  # authentication's one-trip pipeline, or get_many
def test_a_garbage_or_odd_hint_is_no_hint(
    make_account, make_api_client, rivya_settings, upstream, monkeypatch, rate_limit
):
    """Whatever sits in the hint's entry (bytes no serializer wrote, a str, a negative or a huge int),
    the turn is answered as the plain path answers it (a huge one: the commit's 402), never a 500."""
    rivya_settings("RIVYA_API", RATE_LIMIT=rate_limit)
    account = make_account()
    billing.credits_grant(account=account, amount=50, reference="grant")
    client = make_api_client(account)
    cache = caches["default"]
    entry = funds_hint.name(client.api_key.key_hash)
    raw = cache._cache.get_client(cache.make_and_validate_key(entry), write=True)
    for value in (b"\x80\x05garbage", "1000", -5, 10**30):
        if isinstance(value, bytes):
            raw.set(cache.make_and_validate_key(entry), value, ex=funds_hint.HINT_SECONDS)
        else:
            cache.set(entry, value, funds_hint.HINT_SECONDS)
        response = turn(client)
        assert response.status_code == 402, (value, response.content)
        assert response.json()["error"]["code"] == "insufficient_credits"
        assert "50 are available" in response.json()["error"]["message"]
