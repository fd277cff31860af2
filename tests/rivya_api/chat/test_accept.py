"""A streamed turn's model request goes out while its commit runs, and a refused commit leaves nothing.

``chat_turn_prepare`` reads and computes; the view then starts the model's
request and ``chat_turn_commit`` (messages, the hold) side by side. These
tests pin both halves: the request really is in flight before the commit
ends, and a commit refused after the request went out (the wallet spent
meanwhile, or another turn of the session ended meanwhile) answers the same
402/409 a non-streaming request gets, stops the model's request, and writes,
shows and charges nothing.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from rivya_api.catalog.selectors import catalog_model_get
from rivya_api.chat import services, turns
from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_billing.models import Hold
from rivya_billing.selectors import wallet_get
from tests.rivya_api.chat.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_BODY = {"model": "rivya-chat-upstream", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def post_stream(url: str, secret: str, body: dict) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=20
    )


def test_the_model_request_goes_out_before_the_commit_ends(live_server_url, funded, upstream, monkeypatch):
    _, secret = funded()
    upstream.script.first_delay = 0.2
    commit = services.chat_turn_commit
    seen_by_upstream = threading.Event()

    def commit_once_the_upstream_has_the_request(plan):
        # Sequential code would never get here with the request sent: it waits up to 5 s, then commits.
        for _ in range(500):
            if upstream.requests:
                seen_by_upstream.set()
                break
            threading.Event().wait(0.01)
        return commit(plan)

    monkeypatch.setattr(services, "chat_turn_commit", commit_once_the_upstream_has_the_request)
    response = post_stream(live_server_url, secret, UPSTREAM_BODY)
    assert response.status_code == 200, response.text
    assert seen_by_upstream.is_set()
    assert response.text.rstrip().endswith("data: [DONE]")
    assert ChatMessage.objects.get(role="assistant").status == "completed"


def test_the_commit_starts_once_the_request_is_on_the_wire(live_server_url, funded, upstream, monkeypatch):
    """Not at the model's first event (a second later here), nor after the grace: when the body is sent."""
    _, secret = funded()
    upstream.script.first_delay = 1
    monkeypatch.setattr(turns, "COMMIT_GRACE_SECONDS", 30)
    commit = services.chat_turn_commit
    started_at: list[float] = []

    def timed(plan):
        started_at.append(time.monotonic())
        return commit(plan)

    monkeypatch.setattr(services, "chat_turn_commit", timed)
    response = post_stream(live_server_url, secret, UPSTREAM_BODY)
    assert response.status_code == 200, response.text
    assert started_at[0] < upstream.sent_at[0] - 0.5  # the first chunk came a second after the request


def test_a_commit_refused_for_credits_is_a_402_and_stops_the_model(live_server_url, funded, upstream, monkeypatch):
    account, secret = funded(credits=5)
    upstream.script.first_delay = 2  # the model would still be thinking when the answer is known
    # Another request spent the credits between this turn's check and its hold.
    monkeypatch.setattr(services.billing_selectors, "credits_available", lambda account: 10**9)
    started = monkeypatch_started_commits(monkeypatch)
    response = post_stream(live_server_url, secret, UPSTREAM_BODY)
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert "needs up to" in error["message"]
    assert "5 are available" in error["message"]
    assert response.headers["x-should-retry"] == "false"
    assert started == [1]
    assert upstream.requests, "the model's request had gone out"
    assert upstream.disconnected.wait(5), "and it was stopped"
    assert not ChatSession.objects.exists()
    assert not ChatMessage.objects.exists()
    assert not Hold.objects.exists()
    wallet = wallet_get(account=account)
    assert (wallet.balance, wallet.held) == (5, 0)


def test_a_session_that_moved_on_meanwhile_is_a_409(live_server_url, funded, upstream, monkeypatch):
    account, secret = funded()
    first = post_stream(live_server_url, secret, {**UPSTREAM_BODY, "stream": False})
    session_id = first.json()["session_id"]
    finished_first = wait_for(lambda: upstream.finished_at)  # set after its last send: the reply may come first
    upstream.script.first_delay = 0.3
    prepare = services.chat_turn_prepare

    def prepare_then_another_turn_ends(**kwargs):
        plan = prepare(**kwargs)
        # As if a concurrent turn of the session ended after this one read the history.
        session = ChatSession.objects.get(public_id=session_id)
        session.save(update_fields=["updated_at"])
        return plan

    monkeypatch.setattr(services, "chat_turn_prepare", prepare_then_another_turn_ends)
    holds_before = Hold.objects.count()
    response = post_stream(live_server_url, secret, {**UPSTREAM_BODY, "session_id": session_id})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "session_busy"
    time.sleep(1)  # past the model's first chunk: a request left running would have finished by now
    assert upstream.finished_at == finished_first
    assert ChatMessage.objects.filter(session__public_id=session_id).count() == 2  # the first turn's only
    assert Hold.objects.count() == holds_before


def test_a_refused_streamed_turn_with_an_idempotency_key_replays_its_refusal(
    live_server_url, funded, upstream, monkeypatch
):
    _, secret = funded(credits=5)
    upstream.script.first_delay = 2
    monkeypatch.setattr(services.billing_selectors, "credits_available", lambda account: 10**9)
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": "refused-at-commit"}
    url = f"{live_server_url}/api/v1/chat/completions"
    first = httpx.post(url, json=UPSTREAM_BODY, headers=headers, timeout=20)
    again = httpx.post(url, json=UPSTREAM_BODY, headers=headers, timeout=20)
    assert first.status_code == again.status_code == 402
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["error"]["code"] == "insufficient_credits"
    assert len(upstream.requests) == 1  # the replay called no model


def monkeypatch_started_commits(monkeypatch) -> list[int]:
    """Count calls of chat_turn_commit (a list, so the test sees it fill)."""
    calls: list[int] = []
    commit = services.chat_turn_commit

    def counted(plan):
        calls.append(1)
        return commit(plan)

    monkeypatch.setattr(services, "chat_turn_commit", counted)
    return calls


def test_a_plan_commits_once(funded, upstream):
    account, _ = funded()
    model = catalog_model_get("rivya-chat-priced")
    plan = services.chat_turn_prepare(account=account, model=model, messages=[services.NewMessage("user", "hi")])
    services.chat_turn_commit(plan)
    assert plan.pending is None, "the committed turn keeps no ORM objects"
    with pytest.raises(RuntimeError, match="committed already"):
        services.chat_turn_commit(plan)
    assert Hold.objects.count() == 1
    assert ChatMessage.objects.filter(turn_id=plan.turn_id).count() == 2  # the user's message and the reply
