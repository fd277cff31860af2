"""The Chat API driven by the official OpenAI Python SDK against a live server.

``openai`` is pinned in requirements.txt; the server is the project's ASGI app
under uvicorn on a real socket, so streaming is exercised end to end.
"""

from __future__ import annotations

import httpx2
import openai
import pytest

from rivya_api.chat import tokenizer
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_billing.selectors import wallet_get

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "rivya-chat-1"


def client(live_server_url: str, secret: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/api/v1", api_key=secret, **kwargs)


def test_non_streaming_turn_creates_a_session_and_reports_credits(live_server_url, funded):
    account, secret = funded()
    raw = client(live_server_url, secret).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("msg_")
    assert completion.choices[0].finish_reason == "stop"
    content = completion.choices[0].message.content
    assert content.endswith("It said: Hello there")
    session_id = completion.model_extra["session_id"]
    assert session_id.startswith("chat_")
    assert raw.headers["Rivya-Session-Id"] == session_id
    prompt_tokens = tokenizer.count_prompt_tokens([{"role": "user", "content": "Hello there"}])
    assert completion.usage.prompt_tokens == prompt_tokens
    assert completion.usage.completion_tokens == tokenizer.count_tokens(content)
    credits = completion.usage.model_extra["credits"]
    assert credits == -(-(prompt_tokens * 1 + completion.usage.completion_tokens * 2) // 1000)
    assert wallet_get(account=account).balance == 10_000 - credits
    assert ChatSession.objects.get(public_id=session_id).account == account


def test_streaming_turn_through_the_sdk(live_server_url, funded):
    _, secret = funded()
    stream = client(live_server_url, secret).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Stream please"}], stream=True
    )
    chunks = list(stream)
    content_chunks = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert len(content_chunks) > 10  # token by token, not one block
    text = "".join(chunk.choices[0].delta.content for chunk in content_chunks)
    assert text.endswith("It said: Stream please")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == len(content_chunks) == tokenizer.count_tokens(text)
    assert last.usage.model_extra["credits"] >= 1
    assert len({chunk.id for chunk in chunks}) == 1
    session = ChatSession.objects.get(public_id=last.model_extra["session_id"])
    assert session.messages.get(role="assistant").content == text


def test_session_continues_through_extra_body(live_server_url, funded):
    _, secret = funded()
    sdk = client(live_server_url, secret)
    first = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "First question"}],
    )
    session_id = first.model_extra["session_id"]
    second = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Second question"}], extra_body={"session_id": session_id}
    )
    assert second.model_extra["session_id"] == session_id
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Second question"},
    ]
    # The local model reports what it received: the stored history plus the new message.
    assert "You sent 4 messages" in second.choices[0].message.content
    assert second.usage.prompt_tokens == tokenizer.count_prompt_tokens(history)
    session = ChatSession.objects.get(public_id=session_id)
    assert session.message_count == 5
    roles = list(session.messages.order_by("created_at", "pk").values_list("role", flat=True))
    assert roles == ["system", "user", "assistant", "user", "assistant"]


def test_invalid_key_raises_authentication_error(live_server_url, db):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(live_server_url, "rvya_sk_not-a-real-key", max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401


@pytest.mark.parametrize("stream", [False, True])
def test_insufficient_credits_is_a_402_the_sdk_does_not_retry(live_server_url, funded, stream):
    account, secret = funded(credits=0)
    sent = []
    http_client = httpx2.Client(event_hooks={"request": [sent.append]})
    sdk = client(live_server_url, secret, max_retries=3, http_client=http_client)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=stream)
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_credits"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == 1
    # Rejected before acceptance: nothing reserved, no session, no message.
    assert not ChatSession.objects.filter(account=account).exists()
    assert not ChatMessage.objects.exists()


def test_unsupported_parameter_is_a_400_naming_it(live_server_url, funded):
    _, secret = funded()
    with pytest.raises(openai.BadRequestError) as caught:
        client(live_server_url, secret, max_retries=0).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        )
    assert caught.value.body["param"] == "tools"
    assert caught.value.body["code"] == "unsupported_parameter"


def test_streaming_upstream_failure_mid_stream_raises_in_the_sdk(live_server_url, funded, upstream):
    account, secret = funded()
    upstream.script.fail_after = 2
    stream = client(live_server_url, secret, max_retries=0).chat.completions.create(
        model="rivya-chat-upstream", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []

    def consume() -> None:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError) as caught:
        consume()
    assert received == ["Hello", " from"]
    assert "vendor" not in str(caught.value).lower()
    assert wallet_get(account=account).held == 0
    assert wallet_get(account=account).balance == 10_000
