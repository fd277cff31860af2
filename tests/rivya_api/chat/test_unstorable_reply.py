"""A model's reply that PostgreSQL's text cannot take as it is (a NUL, a lone surrogate), streamed.

The client receives a NUL as the model sent it (JSON-escaped in the SSE events) and a lone
surrogate as U+FFFD (UTF-8 has none: it ended the stream and the turn's Redis mirror); the turn is
saved with U+FFFD for both and charged (or, failed, released): it never stays in progress.
"""

from __future__ import annotations

import json

import pytest

from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_billing.selectors import wallet_get
from tests.rivya_api.chat.test_streaming import events_of, upstream_turn

pytestmark = pytest.mark.django_db(transaction=True)

CHUNKS = ["NUL \x00 here", ", lone \ud800", ", pair \ud83d\udc4b"]
STORED = "NUL \ufffd here, lone \ufffd, pair 👋"


def streamed(live_server_url: str, secret: str) -> tuple[list[dict], list[str]]:
    with upstream_turn(live_server_url, secret) as response:
        assert response.status_code == 200
        raw = [item["data"] for kind, item in events_of(response.iter_lines()) if kind == "event"]
    chunks = [json.loads(data) for data in raw if data != "[DONE]"]
    return chunks, raw


def test_an_unstorable_reply_is_streamed_as_sent_and_saved_with_replacements(live_server_url, funded, upstream):
    account, secret = funded()
    upstream.script.chunks = CHUNKS
    chunks, raw = streamed(live_server_url, secret)
    deltas = [chunk["choices"][0]["delta"].get("content") for chunk in chunks if chunk["choices"]]
    assert "".join(delta for delta in deltas if delta) == "NUL \x00 here, lone \ufffd, pair 👋"
    assert "\\u0000" in raw[0]  # JSON-escaped on the wire, as before
    message = ChatMessage.objects.get(role="assistant")
    assert (message.status, message.content) == ("completed", STORED)
    assert message.credits_charged > 0
    assert ChatSession.objects.get().credits_spent == message.credits_charged
    assert wallet_get(account=account).balance == 10_000 - message.credits_charged


def test_an_unstorable_reply_that_fails_is_released(live_server_url, funded, upstream):
    account, secret = funded()
    upstream.script.chunks = [*CHUNKS, " never sent"]
    upstream.script.fail_after = 3  # an error event after CHUNKS
    chunks, _ = streamed(live_server_url, secret)
    assert chunks[-1]["error"]["code"] == "model_error"
    message = ChatMessage.objects.get(role="assistant")
    assert (message.status, message.content, message.credits_charged) == ("failed", STORED, 0)
    assert wallet_get(account=account).balance == 10_000
    assert wallet_get(account=account).held == 0
