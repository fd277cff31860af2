"""Chat turns in the ledger: exact reserve -> settle, the length stop, failure, disconnect; and a clean ledger.

Prices come from the catalog entry of each model; the expected figures are
computed here from the documented tokenizer, independently of the code under test.
"""

from __future__ import annotations

import httpx
import pytest
from django.core.management import call_command

from rivya_api.chat import tokenizer
from rivya_api.chat.models import ChatMessage
from rivya_api.chat.providers.local import local_reply
from rivya_billing.selectors import wallet_entries, wallet_get
from tests.rivya_api.chat.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def ceil_credits(prompt: int, completion: int, price_in: int, price_out: int) -> int:
    return max(1, -(-(prompt * price_in + completion * price_out) // 1000))


def lines(account, turn_id: str) -> list[tuple[str, int]]:
    entries = wallet_entries(account=account, reference=f"chat_turn:{turn_id}")
    return [(entry.type, entry.amount) for entry in reversed(list(entries))]


def post_turn(client, **body):
    return client.post("/api/v1/chat/completions", body, format="json")


def test_normal_turn_reserves_the_upper_bound_and_settles_real_usage(make_api_client, funded, upstream):
    account, _ = funded(10_000)
    messages = [{"role": "user", "content": "Price me"}]
    response = post_turn(make_api_client(account), model="rivya-chat-priced", messages=messages, max_tokens=300)
    assert response.status_code == 200, response.content
    prompt = tokenizer.count_prompt_tokens(messages)
    completion = tokenizer.count_tokens(local_reply(messages))
    reserved = ceil_credits(prompt, 300, 10, 1000)
    charged = ceil_credits(prompt, completion, 10, 1000)
    assert reserved > charged > 1
    turn_id = response.json()["id"]
    assert lines(account, turn_id) == [("reserve", reserved), ("settle", charged), ("release", reserved - charged)]
    assert response.json()["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "credits": charged,
    }
    message = ChatMessage.objects.get(public_id=turn_id)
    assert (message.credits_reserved, message.credits_charged) == (reserved, charged)
    wallet = wallet_get(account=account)
    assert (wallet.balance, wallet.held) == (10_000 - charged, 0)


def test_length_stopped_turn_is_charged_for_the_tokens_it_was_allowed(make_api_client, funded, upstream):
    account, _ = funded(10_000)
    messages = [{"role": "user", "content": "Say a lot"}]
    response = post_turn(make_api_client(account), model="rivya-chat-priced", messages=messages, max_tokens=7)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    prompt = tokenizer.count_prompt_tokens(messages)
    reserved = ceil_credits(prompt, 7, 10, 1000)
    charged = ceil_credits(prompt, 7, 10, 1000)
    assert body["usage"]["completion_tokens"] == 7
    assert lines(account, body["id"]) == [("reserve", reserved), ("settle", charged)]
    assert "".join(tokenizer.tokenize(local_reply(messages))[:7]) == body["choices"][0]["message"]["content"]


def test_upstream_usage_is_what_is_charged(make_api_client, funded, upstream):
    account, _ = funded(10_000)
    upstream.script.usage = {"prompt_tokens": 40, "completion_tokens": 4}
    messages = [{"role": "user", "content": "hi"}]
    response = post_turn(make_api_client(account), model="rivya-chat-upstream", messages=messages)
    assert response.status_code == 200, response.content
    estimate = -(-tokenizer.count_prompt_tokens(messages, image_tokens=1105) * 125 // 100)
    reserved = ceil_credits(estimate, 100, 100, 300)
    charged = ceil_credits(40, 4, 100, 300)
    assert lines(account, response.json()["id"]) == [
        ("reserve", reserved),
        ("settle", charged),
        ("release", reserved - charged),
    ]
    assert upstream.requests[0]["max_tokens"] == 100


def test_failed_upstream_releases_the_whole_hold(make_api_client, funded, upstream):
    account, _ = funded(10_000)
    upstream.script.fail_after = 2
    response = post_turn(
        make_api_client(account), model="rivya-chat-upstream", messages=[{"role": "user", "content": "x"}]
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "model_error"
    turn = ChatMessage.objects.get(role="assistant")
    assert turn.status == "failed"
    reserve = lines(account, turn.public_id)[0]
    assert lines(account, turn.public_id) == [reserve, ("release", reserve[1])]
    assert wallet_get(account=account).balance == 10_000
    # The failed turn's messages leave the session's history.
    assert set(ChatMessage.objects.values_list("status", flat=True)) == {"failed"}


def test_disconnect_is_charged_for_the_tokens_produced(live_server_url, funded, upstream):
    """The client leaves after 4 events; the turn runs on and is charged exactly its tokens."""
    account, secret = funded(10_000)
    messages = [{"role": "user", "content": "go"}]
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            f"{live_server_url}/api/v1/chat/completions",
            json={"model": "rivya-chat-slow", "messages": messages, "stream": True},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=20,
        ) as response,
    ):
        events = 0
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events == 4:
                break
    turn = wait_for(lambda: ChatMessage.objects.filter(role="assistant").exclude(status="in_progress").first())
    assert turn.status == "completed"
    prompt = tokenizer.count_prompt_tokens(messages)
    produced = tokenizer.count_tokens(local_reply(messages))
    assert turn.completion_tokens == produced
    reserved = ceil_credits(prompt, 1024, 10, 1000)
    charged = ceil_credits(prompt, produced, 10, 1000)
    assert lines(account, turn.public_id) == [
        ("reserve", reserved),
        ("settle", charged),
        ("release", reserved - charged),
    ]


def test_cancel_is_charged_for_the_tokens_produced_so_far(live_server_url, funded, upstream):
    account, secret = funded(10_000)
    messages = [{"role": "user", "content": "go"}]
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client() as client:
        with client.stream(
            "POST",
            f"{live_server_url}/api/v1/chat/completions",
            json={"model": "rivya-chat-slow", "messages": messages, "stream": True},
            headers=auth,
            timeout=20,
        ) as response:
            session_id = response.headers["Rivya-Session-Id"]
            events = 0
            for line in response.iter_lines():
                events += line.startswith("data: ")
                if events == 4:
                    break
        cancel = client.post(f"{live_server_url}/api/v1/chat/sessions/{session_id}/cancel", headers=auth)
    assert cancel.status_code == 200
    turn = ChatMessage.objects.get(role="assistant")
    assert turn.status == "incomplete"
    assert cancel.json()["status"] == "incomplete"
    prompt = tokenizer.count_prompt_tokens(messages)
    produced = tokenizer.count_tokens(turn.content)
    assert 4 <= produced < tokenizer.count_tokens(local_reply(messages))
    assert turn.content == "".join(tokenizer.tokenize(local_reply(messages))[:produced])
    reserved = ceil_credits(prompt, 1024, 10, 1000)
    charged = ceil_credits(prompt, produced, 10, 1000)
    assert cancel.json()["usage"]["credits"] == charged
    assert lines(account, turn.public_id) == [
        ("reserve", reserved),
        ("settle", charged),
        ("release", reserved - charged),
    ]


def test_ledger_check_is_clean_after_chat_turns(make_api_client, funded, upstream, capsys):
    account, _ = funded(10_000)
    client = make_api_client(account)
    assert post_turn(client, model="rivya-chat-1", messages=[{"role": "user", "content": "a"}]).status_code == 200
    upstream.script.status = 500
    assert (
        post_turn(client, model="rivya-chat-upstream", messages=[{"role": "user", "content": "b"}]).status_code == 502
    )
    call_command("rivya_ledger_check")  # raises CommandError on any drift


def test_a_turns_entries_name_its_key_and_are_found_by_its_public_ids(make_api_client, funded, upstream):
    """Issue 22 (6): chat entries carry the key like generations; ?reference= takes msg_ and chat_ ids."""
    account, _ = funded(10_000)
    client = make_api_client(account)
    key_id = client.api_key.public_id
    turn = {"model": "rivya-chat-priced", "max_tokens": 300}
    first = post_turn(client, messages=[{"role": "user", "content": "One"}], **turn).json()
    second = post_turn(
        client, session_id=first["session_id"], messages=[{"role": "user", "content": "Two"}], **turn
    ).json()

    def ledger(reference: str, api=client) -> list[tuple[str, str, str | None]]:
        response = api.get("/api/v1/credits/ledger", {"reference": reference})
        assert response.status_code == 200, response.content
        return [(e["type"], e["reference"], e["actor"]) for e in reversed(response.json()["data"])]

    by_turn = ledger(first["id"])
    assert [kind for kind, _, _ in by_turn] == ["reserve", "settle", "release"]
    assert {(reference, actor) for _, reference, actor in by_turn} == {(first["id"], key_id)}
    # Any message of the turn names it: the user's message too.
    question = ChatMessage.objects.get(turn_id=first["id"], role="user").public_id
    assert ledger(question) == by_turn
    # The session names every turn of it, newest last here.
    by_session = ledger(first["session_id"])
    assert [reference for _, reference, _ in by_session] == [first["id"]] * 3 + [second["id"]] * 3
    # The stored form still works, and another account sees none of it.
    assert ledger(f"chat_turn:{first['id']}") == by_turn
    stranger = make_api_client(funded(10)[0])
    assert ledger(first["id"], api=stranger) == []
    assert ledger(first["session_id"], api=stranger) == []
