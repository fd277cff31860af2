"""The sharded upstream pool (several clients a loop) against one client, exchange by exchange."""

from __future__ import annotations

import asyncio

import pytest

from rivya_api.chat.providers import openai_compatible
from rivya_api.chat.providers.base import ChatProviderError, ChatRequest
from rivya_api.chat.providers.openai_compatible import OpenAICompatibleChatProvider
from rivya_api.chat.providers.upstream_clients import SHARDS, UpstreamClients, limits

REQUEST = ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9)
BURST = 24  # more turns than shards, so some clients carry two


async def turn(provider: OpenAICompatibleChatProvider) -> list | tuple:
    try:
        return [event async for event in provider.stream(REQUEST)]
    except ChatProviderError as error:
        return (error.code, error.status)


def outcome(fresh_upstream, rivya_settings, sharded: bool, sequential: int, burst: int = 0) -> dict:
    """``sequential`` turns one after another, then ``burst`` at once, then one more: what each gave and where."""
    rivya_settings("RIVYA_API", CHAT_UPSTREAM_SHARDED_POOL=sharded)
    fresh_upstream.clients.clear()
    provider = OpenAICompatibleChatProvider(
        {"base_url": fresh_upstream.base_url, "api_key": "k", "upstream_model": "vendor-x-large"}
    )

    async def run() -> dict:
        clients = openai_compatible._upstream_clients()
        assert len(clients.clients) == (SHARDS if sharded else 1)
        results = [await turn(provider) for _ in range(sequential)]
        results += await asyncio.gather(*(turn(provider) for _ in range(burst)))
        pools_used = sum(bool(client._transport._pool.connections) for client in clients.clients)
        results.append(await turn(provider))
        return {"results": results, "pools_used": pools_used}

    seen = asyncio.run(run())
    return {**seen, "connections": fresh_upstream.clients[:]}


SCRIPTS = {
    "deltas": {},
    "no usage, length": {"usage": None, "finish_reason": "length"},
    "error mid-stream": {"fail_after": 2},
    "cut without finish": {"drop_after": 1},
    "upstream 429": {"status": 429},
}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_sequential_turns_are_the_same_and_reuse_one_connection(fresh_upstream, rivya_settings, script):
    for name, value in script.items():
        setattr(fresh_upstream.script, name, value)
    plain = outcome(fresh_upstream, rivya_settings, sharded=False, sequential=3)
    sharded = outcome(fresh_upstream, rivya_settings, sharded=True, sequential=3)
    assert sharded["results"] == plain["results"]
    assert len(set(sharded["connections"])) == len(set(plain["connections"]))
    if not script:  # a reply read to its end leaves its connection warm for the next turn
        assert len(set(sharded["connections"])) == 1


def test_a_burst_spreads_over_the_clients_and_keeps_its_connections(fresh_upstream, rivya_settings):
    fresh_upstream.script.first_delay = 0.2  # every turn of the burst is open at once
    plain = outcome(fresh_upstream, rivya_settings, sharded=False, sequential=1, burst=BURST)
    sharded = outcome(fresh_upstream, rivya_settings, sharded=True, sequential=1, burst=BURST)
    assert sharded["results"] == plain["results"]
    assert sharded["results"][0]
    assert not isinstance(sharded["results"][0], tuple)
    assert (plain["pools_used"], sharded["pools_used"]) == (1, SHARDS)
    for seen in (plain, sharded):
        first, burst, last = seen["connections"][0], seen["connections"][1:-1], seen["connections"][-1]
        assert first in burst  # the warm connection was reused by the burst
        assert len(set(burst)) <= BURST  # no more connections than turns
        assert last in burst  # and kept alive for the turn after it


def test_the_least_busy_client_is_lent_the_first_on_a_tie():
    clients = UpstreamClients(lambda limits, ssl_context: object(), shards=3)
    first, second, third = clients.clients
    with clients.lease() as a:
        with clients.lease() as b, clients.lease() as c:
            assert (a, b, c) == (first, second, third)
            with clients.lease() as d:
                assert d is first
        with clients.lease() as e:
            assert e is second  # first is still busy with a
    with pytest.raises(RuntimeError), clients.lease():
        raise RuntimeError
    with clients.lease() as f:
        assert f is first  # a failed turn gave its client back


def test_keep_alive_connections_are_shared_out():
    assert limits(1).max_keepalive_connections == 100
    assert limits(SHARDS).max_keepalive_connections * SHARDS in range(100, 100 + SHARDS)


def test_a_closed_client_makes_the_loop_a_new_set(rivya_settings):
    rivya_settings("RIVYA_API", CHAT_UPSTREAM_SHARDED_POOL=True)

    async def run() -> tuple:
        clients = openai_compatible._upstream_clients()
        same = openai_compatible._upstream_clients()
        await clients.clients[3].aclose()
        fresh = openai_compatible._upstream_clients()
        await fresh.aclose()
        return clients, same, fresh

    clients, same, fresh = asyncio.run(run())
    assert same is clients
    assert fresh is not clients
    assert clients.is_closed
    assert not clients.clients[0].is_closed
