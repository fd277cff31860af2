"""Idempotency-Key on chat turns: never a second model call or a second charge.

Non-streaming turns go through the API's idempotency like every POST; a
streamed turn replays its stored completion as events once it has ended, and
a retry that arrives while it runs is attached to the live stream.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from django.db import OperationalError
from django.test import RequestFactory
from django.utils import timezone

from rivya_api.chat import services
from rivya_api.chat.models import ChatMessage
from rivya_api.idempotency.http import request_fingerprint
from rivya_api.idempotency.models import IdempotencyRecord
from rivya_api.idempotency.services import idempotency_claim
from rivya_billing.selectors import wallet_entries
from tests.rivya_api.chat.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "rivya-chat-1", "messages": [{"role": "user", "content": "only once"}]}


def post(url: str, secret: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": key},
        timeout=20,
    )


def data_events(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def content(events: list[str]) -> str:
    chunks = [json.loads(data) for data in events if data != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def reserves(account) -> int:
    return wallet_entries(account=account, type="reserve").count()


def test_non_streaming_retry_replays_without_a_second_turn(live_server_url, funded):
    account, secret = funded()
    first = post(live_server_url, secret, "turn-1", BODY)
    again = post(live_server_url, secret, "turn-1", BODY)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["Rivya-Session-Id"] == first.json()["session_id"]
    assert ChatMessage.objects.filter(role="assistant").count() == 1
    assert reserves(account) == 1
    reused = post(live_server_url, secret, "turn-1", {**BODY, "messages": [{"role": "user", "content": "other"}]})
    assert reused.status_code == 422


def test_streaming_retry_after_the_turn_replays_it_as_events(live_server_url, funded):
    account, secret = funded()
    body = {**BODY, "stream": True}
    first = post(live_server_url, secret, "stream-1", body)
    assert first.status_code == 200
    wait_for(lambda: not ChatMessage.objects.filter(status="in_progress").exists())
    again = post(live_server_url, secret, "stream-1", body)
    assert again.status_code == 200
    assert again.headers["content-type"].startswith("text/event-stream")
    assert again.headers["Idempotent-Replayed"] == "true"
    first_events, replayed = data_events(first.text), data_events(again.text)
    assert content(replayed) == content(first_events)
    assert replayed[-1] == "[DONE]"
    assert json.loads(replayed[-2])["usage"] == json.loads(first_events[-2])["usage"]
    assert json.loads(replayed[0])["id"] == json.loads(first_events[0])["id"]
    assert ChatMessage.objects.filter(role="assistant").count() == 1
    assert reserves(account) == 1


def test_streaming_retry_while_the_turn_runs_is_attached_to_it(live_server_url, funded, upstream):
    account, secret = funded()
    body = {"model": "rivya-chat-slow", "messages": [{"role": "user", "content": "attach"}], "stream": True}
    started, results = threading.Event(), {}

    def first_client() -> None:
        with (
            httpx.Client() as client,
            client.stream(
                "POST",
                f"{live_server_url}/api/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "stream-2"},
                timeout=20,
            ) as response,
        ):
            lines = []
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("data: "):
                    started.set()
            results["first"] = "\n".join(lines)

    thread = threading.Thread(target=first_client)
    thread.start()
    assert started.wait(10)
    retry = post(live_server_url, secret, "stream-2", body)
    thread.join(20)
    assert retry.status_code == 200
    assert data_events(retry.text) == data_events(results["first"])  # the whole turn, the same events
    assert ChatMessage.objects.filter(role="assistant").count() == 1
    assert reserves(account) == 1


def test_streaming_retry_while_the_key_is_claimed_elsewhere_is_a_409(live_server_url, funded):
    account, secret = funded()
    body = {**BODY, "stream": True}
    # Another process holds the key and has not started a turn yet.
    raw = json.dumps(body)
    same_request = RequestFactory().post("/api/v1/chat/completions", raw, content_type="application/json")
    idempotency_claim(
        account=account,
        key="stream-3",
        fingerprint=request_fingerprint(same_request),
        request_method="POST",
        request_path="/api/v1/chat/completions",
    )
    response = httpx.post(
        f"{live_server_url}/api/v1/chat/completions",
        content=raw,
        headers={
            "Authorization": f"Bearer {secret}",
            "Idempotency-Key": "stream-3",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_flight"
    assert response.headers["Retry-After"]
    assert not ChatMessage.objects.exists()


def test_a_streamed_turn_refused_by_a_database_outage_leaves_its_key_to_lapse(live_server_url, funded, monkeypatch):
    """A 503 is not stored (it would be replayed for good): the key frees after Retry-After."""
    account, secret = funded()

    def unavailable(plan):
        raise OperationalError("the database went away")

    monkeypatch.setattr(services, "chat_turn_commit", unavailable)
    first = post(live_server_url, secret, "turn-503", {**BODY, "stream": True})
    assert first.status_code == 503, first.text
    record = IdempotencyRecord.objects.get(key="turn-503")
    assert record.state == IdempotencyRecord.State.IN_FLIGHT
    assert 0 < (record.locked_until - timezone.now()).total_seconds() <= int(first.headers["Retry-After"])
    monkeypatch.undo()
    IdempotencyRecord.objects.update(locked_until=timezone.now())  # Retry-After has passed
    again = post(live_server_url, secret, "turn-503", {**BODY, "stream": True})
    assert again.status_code == 200
    assert "Idempotent-Replayed" not in again.headers
    assert data_events(again.text)[-1] == "[DONE]"
    assert reserves(account) == 1
