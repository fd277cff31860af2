"""The SSE wire itself: event ids, no buffering, keep-alives, errors, disconnects."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import pytest

from rivya_api.chat import tokenizer
from rivya_api.chat.models import ChatMessage
from rivya_api.chat.providers.local import local_reply
from rivya_billing.selectors import wallet_get
from tests.rivya_api.chat.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def open_stream(client: httpx.Client, url: str, secret: str, body: dict):
    return client.stream(
        "POST",
        f"{url}/api/v1/chat/completions",
        json={"stream": True, **body},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=20,
    )


@contextlib.contextmanager
def upstream_turn(url: str, secret: str):
    """A streamed one-message turn of the model served by the stand-in upstream."""
    body = {"model": "rivya-chat-upstream", "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client() as client, open_stream(client, url, secret, body) as response:
        yield response


def events_of(lines):
    """(id, data) per SSE event, and the comment lines, from an iterator of lines."""
    event: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            yield ("comment", line)
        elif line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"] = line[6:]
        elif line == "" and event:
            yield ("event", event)
            event = {}


def test_event_ids_usage_chunk_and_done(live_server_url, funded):
    _, secret = funded()
    with (
        httpx.Client() as client,
        open_stream(
            client, live_server_url, secret, {"model": "rivya-chat-1", "messages": [{"role": "user", "content": "hi"}]}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        session_id = response.headers["Rivya-Session-Id"]
        # The same conventions as every authenticated response.
        assert response.headers["X-Request-Id"].startswith("req_")
        assert "x-ratelimit-limit-requests" in response.headers
        events = [item for kind, item in events_of(response.iter_lines()) if kind == "event"]
    assert [int(event["id"]) for event in events] == list(range(1, len(events) + 1))
    assert events[-1]["data"] == "[DONE]"
    usage_chunk = json.loads(events[-2]["data"])
    assert usage_chunk["choices"] == []
    assert set(usage_chunk["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens", "credits"}
    assert usage_chunk["session_id"] == session_id
    assert all(json.loads(event["data"])["usage"] is None for event in events[:-2])


def test_first_chunk_reaches_the_client_before_the_upstream_sends_its_last(live_server_url, funded, upstream):
    _, secret = funded()
    upstream.script.chunks = ["one", " two", " three", " four", " five"]
    upstream.script.delay = 0.3
    received_at = []
    with (
        httpx.Client() as client,
        open_stream(
            client,
            live_server_url,
            secret,
            {"model": "rivya-chat-upstream", "messages": [{"role": "user", "content": "count"}]},
        ) as response,
    ):
        for kind, event in events_of(response.iter_lines()):
            if kind == "event" and event["data"] != "[DONE]":
                chunk = json.loads(event["data"])
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    received_at.append(time.monotonic())
    assert len(received_at) == 5  # no chunk merged or dropped
    assert len(upstream.sent_at) == 5
    assert received_at[0] < upstream.sent_at[-1] - 0.9  # the first came while the upstream was still going
    for sent, received in zip(upstream.sent_at, received_at, strict=True):
        assert received - sent < 0.25  # each one as it came, not batched


@pytest.mark.rivya_settings({"RIVYA_API": {"CHAT_KEEPALIVE_SECONDS": 0.1}})
def test_keep_alive_comments_while_the_model_is_silent(live_server_url, funded, upstream):
    _, secret = funded()
    upstream.script.first_delay = 0.6
    with upstream_turn(live_server_url, secret) as response:
        items = list(events_of(response.iter_lines()))
    first_event = next(index for index, (kind, _) in enumerate(items) if kind == "event")
    assert first_event >= 2
    assert all(items[index] == ("comment", ": keep-alive") for index in range(first_event))
    assert items[-1][1]["data"] == "[DONE]"


def test_upstream_failure_before_any_output_is_an_http_error(live_server_url, funded, upstream):
    account, secret = funded()
    upstream.script.status = 503
    with upstream_turn(live_server_url, secret) as response:
        response.read()
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "model_error"
    assert "vendor" not in error["message"].lower()
    assert wallet_get(account=account).held == 0
    assert ChatMessage.objects.get(role="assistant").status == "failed"


# The keep-alive interval outlasts the client's timeout: only the model's acceptance can start the response.
@pytest.mark.rivya_settings({"RIVYA_API": {"CHAT_KEEPALIVE_SECONDS": 60}})
def test_the_response_starts_when_the_model_accepts_the_request(live_server_url, funded, upstream):
    """As a direct call's would: the status and headers come before the first token, not with it."""
    _, secret = funded()
    first_token = threading.Event()
    upstream.script.first_gate = first_token  # the model accepts the request, then holds its first token
    with upstream_turn(live_server_url, secret) as response:
        # The headers are here while the model still holds its first token: they did not wait for it.
        assert response.status_code == 200
        assert not upstream.sent_at
        first_token.set()
        items = list(events_of(response.iter_lines()))
    assert items[0][0] == "event"  # no keep-alive was needed
    assert items[-1][1]["data"] == "[DONE]"
    assert len(upstream.sent_at) == len(upstream.script.chunks)


def test_a_model_that_fails_after_accepting_the_request_is_an_error_event(live_server_url, funded, upstream):
    account, secret = funded()
    upstream.script.first_delay = 0.5
    upstream.script.drop_after = 0  # the connection ends before the first token
    with upstream_turn(live_server_url, secret) as response:
        assert response.status_code == 200
        events = [item for kind, item in events_of(response.iter_lines()) if kind == "event"]
    assert len(events) == 1
    assert json.loads(events[0]["data"])["error"]["code"] == "model_error"
    assert wait_for(lambda: ChatMessage.objects.get(role="assistant").status == "failed")
    assert wallet_get(account=account).held == 0


def test_error_after_the_stream_started_is_an_error_event_then_close(live_server_url, funded, upstream):
    account, secret = funded()
    upstream.script.fail_after = 3
    with upstream_turn(live_server_url, secret) as response:
        events = [item for kind, item in events_of(response.iter_lines()) if kind == "event"]
    assert len(events) == 4
    error = json.loads(events[-1]["data"])["error"]
    assert error["code"] == "model_error"
    assert error["request_id"] == response.headers["X-Request-Id"]
    message = ChatMessage.objects.get(role="assistant")
    assert message.status == "failed"
    assert message.credits_charged == 0
    assert wallet_get(account=account).balance == 10_000


def test_client_disconnect_does_not_stop_the_turn(live_server_url, funded, upstream):
    """A turn runs to its end when its client goes away, and is saved and charged like any other."""
    account, secret = funded()
    messages = [{"role": "user", "content": "x"}]
    with (
        httpx.Client() as client,
        open_stream(client, live_server_url, secret, {"model": "rivya-chat-slow", "messages": messages}) as response,
    ):
        received = 0
        for kind, _ in events_of(response.iter_lines()):
            if kind == "event":
                received += 1
            if received == 3:
                break
    message = wait_for(lambda: ChatMessage.objects.filter(role="assistant").exclude(status="in_progress").first())
    assert message.status == "completed"
    assert message.content == local_reply(messages)
    assert message.completion_tokens == tokenizer.count_tokens(message.content)
    prompt = tokenizer.count_prompt_tokens(messages)
    expected = -(-(prompt * 10 + message.completion_tokens * 1000) // 1000)
    assert message.credits_charged == expected
    wallet = wallet_get(account=account)
    assert wallet.held == 0
    assert wallet.balance == 10_000 - expected


def test_upstream_connection_closes_when_a_turn_is_cancelled(live_server_url, funded, upstream):
    _, secret = funded()
    upstream.script.chunks = ["tick"] * 50
    upstream.script.delay = 0.05
    with httpx.Client() as client:
        with open_stream(
            client,
            live_server_url,
            secret,
            {"model": "rivya-chat-upstream", "messages": [{"role": "user", "content": "x"}]},
        ) as response:
            session_id = response.headers["Rivya-Session-Id"]
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break
        cancel = client.post(
            f"{live_server_url}/api/v1/chat/sessions/{session_id}/cancel", headers={"Authorization": f"Bearer {secret}"}
        )
    assert cancel.status_code == 200
    assert upstream.disconnected.wait(5)  # the gateway stopped reading and hung up on the upstream
    assert cancel.json()["status"] == "incomplete"
