"""Fixtures of the chat tests: a live server, funded accounts, models wired to a stand-in upstream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rivya_api.keys.services import api_key_create
from rivya_billing.services import credits_grant
from tests.rivya_api.chat.servers import ServerThread, StandInUpstream

UPSTREAM_MODEL = {
    "id": "rivya-chat-upstream",
    "kind": "chat",
    "description": "A chat model served by an OpenAI-compatible upstream (the tests' stand-in).",
    "provider": "rivya_api.chat.providers.openai_compatible.OpenAICompatibleChatProvider",
    "options": {"upstream_model": "vendor-x-large", "read_timeout": 5},
    "upstream": {"base_url_env": "RIVYA_TEST_CHAT_BASE_URL", "api_key_env": "RIVYA_TEST_CHAT_API_KEY"},
    "pricing": {"input_per_1k_tokens": 100, "output_per_1k_tokens": 300},
    "limits": {"timeout_seconds": 60, "context_window": 8192, "max_output_tokens": 100},
}
PRICED_LOCAL_MODEL = {
    "id": "rivya-chat-priced",
    "kind": "chat",
    "description": "The local development chat model at a price that makes every token count.",
    "provider": "rivya_api.chat.providers.local.LocalChatProvider",
    "pricing": {"input_per_1k_tokens": 10, "output_per_1k_tokens": 1000},
    "limits": {"timeout_seconds": 60, "context_window": 4096, "max_output_tokens": 1024},
}
SLOW_LOCAL_MODEL = {
    "id": "rivya-chat-slow",
    "kind": "chat",
    "description": "The local development chat model, one token every 50 ms.",
    "provider": "rivya_api.chat.providers.local.LocalChatProvider",
    "options": {"token_delay": 0.05},
    "pricing": {"input_per_1k_tokens": 10, "output_per_1k_tokens": 1000},
    "limits": {"timeout_seconds": 60, "context_window": 4096, "max_output_tokens": 1024},
}


@pytest.fixture(scope="session")
def live_server_url() -> Iterator[str]:
    """The project's ASGI app (the same Django application ``config.asgi`` serves) under uvicorn.

    Built with ``config.middleware.ASGIHandler`` (what ``config.asgi`` serves) rather
    than imported from ``config.asgi``, so that importing it does not start the
    in-process periodic runner in the tests.
    """
    from config.middleware import ASGIHandler

    with ServerThread(ASGIHandler()) as server:
        yield server.url


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[tuple[StandInUpstream, str]]:
    upstream = StandInUpstream()
    with ServerThread(upstream) as server:
        yield upstream, server.url


@pytest.fixture
def upstream(_upstream_server: tuple[StandInUpstream, str], monkeypatch: pytest.MonkeyPatch, settings: Any):
    """The stand-in upstream, reset, and the catalog's upstream + slow local models wired to it."""
    stand_in, url = _upstream_server
    stand_in.__init__()  # a fresh script and fresh records for this test
    monkeypatch.setenv("RIVYA_TEST_CHAT_BASE_URL", url + "/v1")
    monkeypatch.setenv("RIVYA_TEST_CHAT_API_KEY", "sk-upstream-test")
    settings.RIVYA_API = {
        **settings.RIVYA_API,
        "MODELS": [*settings.RIVYA_API["MODELS"], UPSTREAM_MODEL, PRICED_LOCAL_MODEL, SLOW_LOCAL_MODEL],
    }
    return stand_in


@pytest.fixture
def fresh_upstream() -> Iterator[StandInUpstream]:
    """A stand-in upstream on its own server for this test alone (its ``base_url`` ends in ``/v1``).

    For tests that call a provider adapter directly and count the upstream's connections,
    which the session-wide ``upstream`` would carry over from earlier tests.
    """
    stand_in = StandInUpstream()
    with ServerThread(stand_in) as server:
        stand_in.base_url = server.url + "/v1"
        yield stand_in


@pytest.fixture
def funded(make_account: Callable[..., Any]) -> Callable[..., tuple[Any, str]]:
    """``funded(credits)`` -> (account, API key secret) for a new account holding ``credits``."""

    def make(credits: int = 10_000) -> tuple[Any, str]:
        account = make_account()
        if credits:
            credits_grant(account=account, amount=credits, reference=f"test-grant-{account.pk}")
        _, secret = api_key_create(account=account, name="chat tests")
        return account, secret

    return make


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (background turns finish on their own)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _turns_end_within_the_test() -> Iterator[None]:
    """Turns outlive their requests; let every turn a test started end before its database goes away."""
    from rivya_api.chat import streams

    yield
    deadline = time.monotonic() + 20
    while any(turn.task is not None and not turn.task.done() for turn in list(streams.local_turns.turns.values())):
        if time.monotonic() > deadline:
            raise AssertionError("a chat turn was still running 20 s after its test")
        time.sleep(0.02)
    for turn in list(streams.local_turns.turns.values()):
        if turn.mirror is not None:
            while not turn.mirror.done() and time.monotonic() < deadline:
                time.sleep(0.02)
