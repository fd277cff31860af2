"""The chat providers on their own: the tokenizer, the local model, the upstream adapter on a real socket."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivya_api.chat import tokenizer
from rivya_api.chat.providers.base import ChatProviderError, ChatRequest, ChatUsage, Finished, TextDelta
from rivya_api.chat.providers.local import LocalChatProvider
from rivya_api.chat.providers.openai_compatible import OpenAICompatibleChatProvider


def collect(provider, request):
    async def run():
        return [event async for event in provider.stream(request)]

    return asyncio.run(run())


# --- tokenizer ------------------------------------------------------------------------


@given(st.text())
def test_tokens_join_back_to_the_text(text):
    assert "".join(tokenizer.tokenize(text)) == text


def test_token_rules_are_the_documented_ones():
    assert tokenizer.tokenize("Hello, world!") == ["Hell", "o", ",", " worl", "d", "!"]
    assert tokenizer.tokenize("I'm 1234567") == ["I", "'m", " 123", "456", "7"]
    assert tokenizer.tokenize("a\n\nb") == ["a", "\n", "\n", "b"]
    messages = [{"role": "user", "content": "Hello, world!"}]
    assert tokenizer.count_prompt_tokens(messages) == 3 + 4 + 6
    with_image = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]}]
    assert tokenizer.count_prompt_tokens(with_image) == 3 + 4 + 1 + 85


# --- local model ------------------------------------------------------------------------


def test_local_model_streams_token_by_token_with_exact_usage():
    messages = [{"role": "user", "content": "Say something"}]
    events = collect(LocalChatProvider({}), ChatRequest(messages=messages, max_output_tokens=1000))
    deltas = [event.text for event in events[:-1]]
    assert all(isinstance(event, TextDelta) for event in events[:-1])
    assert len(deltas) > 20
    text = "".join(deltas)
    assert "local development model" in text
    assert text.endswith("It said: Say something")
    assert deltas == tokenizer.tokenize(text)
    assert events[-1] == Finished("stop", ChatUsage(tokenizer.count_prompt_tokens(messages), len(deltas)))


def test_local_model_honours_max_tokens_and_stop():
    messages = [{"role": "user", "content": "one two three"}]
    events = collect(LocalChatProvider({}), ChatRequest(messages=messages, max_output_tokens=5))
    assert len(events) == 6
    assert events[-1].finish_reason == "length"
    assert events[-1].usage.completion_tokens == 5
    events = collect(LocalChatProvider({}), ChatRequest(messages=messages, max_output_tokens=500, stop=["offline"]))
    text = "".join(event.text for event in events[:-1])
    assert text.endswith("it runs ")
    assert events[-1].finish_reason == "stop"


def test_local_model_delays_do_not_block_the_loop():
    provider = LocalChatProvider({"token_delay": 0.02})
    request = ChatRequest(messages=[{"role": "user", "content": "x"}], max_output_tokens=10)

    async def run():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        started = time.monotonic()
        events = [event async for event in provider.stream(request)]
        task.cancel()
        return events, time.monotonic() - started, ticks

    events, elapsed, ticks = asyncio.run(run())
    assert len(events) == 11
    assert elapsed >= 9 * 0.02
    assert ticks >= 10  # the loop kept running between tokens


# --- OpenAI-compatible upstream ------------------------------------------------------------


def adapter(fresh_upstream, **options):
    return OpenAICompatibleChatProvider(
        {"base_url": fresh_upstream.base_url, "api_key": "sk-upstream", "upstream_model": "vendor-x-large", **options}
    )


def test_upstream_is_configured_only_with_a_base_url_and_model():
    assert not OpenAICompatibleChatProvider.is_configured({"base_url": "", "upstream_model": "m"})
    assert not OpenAICompatibleChatProvider.is_configured({"base_url": "http://x/v1"})
    assert OpenAICompatibleChatProvider.is_configured({"base_url": "http://x/v1", "upstream_model": "m"})


def test_upstream_streams_deltas_and_usage(fresh_upstream):
    request = ChatRequest(
        messages=[{"role": "user", "content": "hi"}], max_output_tokens=50, temperature=0.5, stop=["\n"]
    )
    events = collect(adapter(fresh_upstream), request)
    assert [event.text for event in events[:-1]] == ["Hello", " from", " upstream", "."]
    assert events[-1] == Finished("stop", ChatUsage(11, 4))
    sent = fresh_upstream.requests[0]
    assert sent["model"] == "vendor-x-large"
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 50
    assert sent["temperature"] == 0.5
    assert sent["stop"] == ["\n"]
    assert "top_p" not in sent
    assert fresh_upstream.headers[0]["authorization"] == "Bearer sk-upstream"


def test_turns_reuse_the_connection_to_the_upstream(fresh_upstream):
    """After [DONE] the body's end is read, so the connection goes back to the pool (no new handshake per turn)."""
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9)

    async def three_turns():
        provider = adapter(fresh_upstream)
        return [[event async for event in provider.stream(request)] for _ in range(3)]

    for events in asyncio.run(three_turns()):
        assert events[-1] == Finished("stop", ChatUsage(11, 4))
    assert len(fresh_upstream.clients) == 3
    assert len(set(fresh_upstream.clients)) == 1, fresh_upstream.clients


def test_a_body_that_does_not_end_after_done_does_not_hold_the_turn(fresh_upstream):
    fresh_upstream.script.end_delay = 5
    started = time.monotonic()
    events = collect(
        adapter(fresh_upstream), ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9)
    )
    assert time.monotonic() - started < 2
    assert events[-1] == Finished("stop", ChatUsage(11, 4))


def test_upstream_without_usage_leaves_counting_to_the_gateway(fresh_upstream):
    fresh_upstream.script.usage = None
    fresh_upstream.script.finish_reason = "length"
    events = collect(
        adapter(fresh_upstream), ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=4)
    )
    assert events[-1] == Finished("length", None)


@pytest.mark.parametrize(
    ("status", "code", "http_status"),
    [
        (429, "model_overloaded", 503),
        (400, "model_rejected_request", 400),
        (500, "model_error", 502),
        (401, "model_unavailable", 502),
        (504, "model_timeout", 504),
    ],
)
def test_upstream_errors_become_rivya_errors_without_upstream_names(fresh_upstream, status, code, http_status):
    fresh_upstream.script.status = status
    with pytest.raises(ChatProviderError) as caught:
        collect(adapter(fresh_upstream), ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=4))
    assert (caught.value.code, caught.value.status) == (code, http_status)
    assert "vendor" not in caught.value.message.lower()


def test_upstream_failure_mid_stream_is_an_error_after_the_deltas(fresh_upstream):
    fresh_upstream.script.fail_after = 2
    seen = []

    async def run():
        async for event in adapter(fresh_upstream).stream(
            ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9)
        ):
            seen.append(event)

    with pytest.raises(ChatProviderError) as caught:
        asyncio.run(run())
    assert [event.text for event in seen] == ["Hello", " from"]
    assert caught.value.code == "model_error"


def test_upstream_stream_cut_without_finish_is_an_error(fresh_upstream):
    fresh_upstream.script.drop_after = 1
    with pytest.raises(ChatProviderError):
        collect(adapter(fresh_upstream), ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9))


def test_upstream_read_timeout_and_unreachable_upstream(fresh_upstream):
    fresh_upstream.script.first_delay = 1.0
    with pytest.raises(ChatProviderError) as caught:
        collect(
            adapter(fresh_upstream, read_timeout=0.2),
            ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9),
        )
    assert caught.value.code == "model_timeout"
    assert caught.value.status == 504
    unreachable = OpenAICompatibleChatProvider({"base_url": "http://127.0.0.1:9/v1", "upstream_model": "m"})
    with pytest.raises(ChatProviderError) as caught:
        collect(unreachable, ChatRequest(messages=[{"role": "user", "content": "hi"}], max_output_tokens=9))
    assert caught.value.code == "model_unavailable"


def test_upstream_prompt_estimate_is_padded():
    provider = OpenAICompatibleChatProvider({"base_url": "http://x/v1", "upstream_model": "m"})
    messages = [{"role": "user", "content": "Hello, world!"}]
    assert provider.count_prompt_tokens(messages) == -(-13 * 125 // 100)


def test_sse_lines_splits_as_httpx_aiter_lines_does_whatever_the_chunking():
    """The provider's own line splitter against httpx's (the plain path), on every split of a body."""
    import asyncio

    import httpx

    from rivya_api.chat.providers.openai_compatible import sse_lines

    body = (
        'data: {"a":"é ü"}\r\n\r\n: comment\rdata: {"b":1}\n\nid: 7\r\ndata: [DONE]\n\nx: 1\r\n\ny: 2\r\ntail'
    ).encode()

    async def ours(parts: list[bytes]) -> list[str]:
        async def chunks():
            for part in parts:
                yield part

        return [line async for line in sse_lines(chunks())]

    class Parts(httpx.AsyncByteStream):
        def __init__(self, parts: list[bytes]) -> None:
            self.parts = parts

        async def __aiter__(self):
            for part in self.parts:
                yield part

    async def theirs(parts: list[bytes]) -> list[str]:
        response = httpx.Response(200, stream=Parts(parts))
        return [line async for line in response.aiter_lines()]

    def meaningful(lines: list[str]) -> list[str]:
        return [line for line in lines if line]  # a CRLF split across two reads may add a blank line

    whole = asyncio.run(ours([body]))
    for cut in range(len(body) + 1):
        for width in (1, 3):
            parts = [body[:cut]] + [body[i : i + width] for i in range(cut, len(body), width)]
            parts = [part for part in parts if part]
            assert meaningful(asyncio.run(ours(parts))) == meaningful(asyncio.run(theirs(parts))), (cut, width)
            assert asyncio.run(ours(parts)) == whole, (cut, width)  # ours: the same lines however it is cut
    # A piece that is only the LF of a CRLF, then a bare LF: a blank line, as in one piece.
    assert asyncio.run(ours([b"a\r", b"\n", b"\nb\n"])) == asyncio.run(ours([b"a\r\n\nb\n"])) == ["a", "", "b"]
    # Unlike str.splitlines, a raw U+2028 inside the JSON does not end the line.
    assert asyncio.run(ours(['data: {"c":"x\u2028y"}\n'.encode()])) == ['data: {"c":"x\u2028y"}']
