"""``GET /chat/sessions`` and ``GET /chat/sessions/{id}``, and the account boundary of sessions."""

from __future__ import annotations

import pytest

from rivya_api.chat.models import ChatSession

pytestmark = pytest.mark.django_db(transaction=True)


def turn(client, content="hi", **extra):
    body = {"model": "rivya-chat-1", "messages": [{"role": "user", "content": content}], **extra}
    return client.post("/api/v1/chat/completions", body, format="json")


def test_sessions_list_and_detail(make_api_client, account):
    client = make_api_client(account)
    from rivya_billing.services import credits_grant

    credits_grant(account=account, amount=1000, reference="grant-sessions")
    first = turn(client, "A first session")
    assert first.status_code == 200, first.content
    second = turn(client, "Another one")
    session_id = second.json()["session_id"]
    again = turn(client, "More", session_id=session_id)
    assert again.status_code == 200

    listing = client.get("/api/v1/chat/sessions")
    assert listing.status_code == 200
    body = listing.json()
    assert [item["id"] for item in body["data"]] == [session_id, first.json()["session_id"]]
    item = body["data"][0]
    assert item["object"] == "chat.session"
    assert item["title"] == "Another one"
    assert item["model"] == "rivya-chat-1"
    assert item["message_count"] == 4
    assert item["credits_spent"] == second.json()["usage"]["credits"] + again.json()["usage"]["credits"]

    detail = client.get(f"/api/v1/chat/sessions/{session_id}").json()
    assert [(m["role"], m["status"]) for m in detail["messages"]] == [
        ("user", "completed"),
        ("assistant", "completed"),
        ("user", "completed"),
        ("assistant", "completed"),
    ]
    assistant = detail["messages"][3]
    assert assistant["id"] == again.json()["id"]
    assert assistant["usage"] == again.json()["usage"]
    assert assistant["finish_reason"] == "stop"
    assert detail["messages"][0]["usage"] is None


def test_another_accounts_session_is_a_404(make_api_client, make_account):
    from rivya_billing.services import credits_grant

    owner, other = make_account(), make_account()
    credits_grant(account=owner, amount=1000, reference="grant-owner")
    credits_grant(account=other, amount=1000, reference="grant-other")
    session_id = turn(make_api_client(owner)).json()["session_id"]
    intruder = make_api_client(other)
    response = intruder.get(f"/api/v1/chat/sessions/{session_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"
    response = turn(intruder, session_id=session_id)
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "session_id"
    assert intruder.get("/api/v1/chat/sessions").json()["data"] == []


def test_studio_sessions_cannot_be_continued_through_the_api(make_api_client, account):
    from rivya_billing.services import credits_grant

    credits_grant(account=account, amount=1000, reference="grant-studio")
    studio = ChatSession.objects.create(account=account, model="rivya-chat-1", source=ChatSession.Source.STUDIO)
    response = turn(make_api_client(account), session_id=studio.public_id)
    assert response.status_code == 404


def test_image_sources_other_than_files_are_refused(make_api_client, account):
    content = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    response = turn(make_api_client(account), content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_image_source"
    assert error["param"] == "messages[0].content[1].image_url.url"


@pytest.mark.parametrize(("model", "article"), [("rivya-image-1", "an"), ("rivya-video-1", "a")])
def test_a_media_model_is_refused_in_plain_english(make_api_client, account, model, article):
    response = turn(make_api_client(account), model=model)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_chat", "model")
    kind = model.split("-")[1]
    assert error["message"].startswith(f"{model} is {article} {kind} model; chat completions need a chat model")
