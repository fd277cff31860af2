"""Ledger entries of chat turns link to the turn on its session's page, and count as chat spend."""

from __future__ import annotations

import pytest

from rivya_api.chat.models import ChatMessage, ChatSession
from rivya_api.pages.ledger import daily_spend
from rivya_billing.services import credits_grant, credits_reserve, credits_settle

pytestmark = pytest.mark.django_db


@pytest.fixture
def turn(member):
    """A finished chat turn of ``member`` as the chat service leaves it: messages, and a settled hold."""
    credits_grant(account=member.account, amount=10, reference="grant")
    session = ChatSession.objects.create(account=member.account, model="rivya-chat-1", title="Haiku help")
    answer = ChatMessage.objects.create(session=session, role="assistant", content="Autumn moon rises", turn_id="x")
    answer.turn_id = answer.public_id
    answer.credits_charged = 2
    answer.save()
    ChatMessage.objects.create(session=session, role="user", content="Write a haiku", turn_id=answer.turn_id)
    reference = f"chat_turn:{answer.turn_id}"
    credits_reserve(account=member.account, amount=3, reference=reference)
    credits_settle(account=member.account, reference=reference, amount=2)
    return session, answer


def test_chat_turn_entries_link_to_the_turn_and_count_as_chat_spend(member, turn):
    session, answer = turn
    html = member.client.get("/settings/credits").content.decode()
    assert f'href="/settings/chat/{session.public_id}#turn-{answer.turn_id}"' in html
    _, series = daily_spend(account=member.account)
    assert {s.kind: s.values[-1] for s in series}["chat"] == 2
    page = member.client.get(f"/settings/chat/{session.public_id}").content.decode()
    assert f'id="turn-{answer.turn_id}"' in page
    assert "Autumn moon rises" in page


def test_another_accounts_chat_session_is_not_reachable(member, stranger, turn):
    session, answer = turn
    assert stranger.client.get(f"/settings/chat/{session.public_id}").status_code == 404
    assert answer.turn_id not in stranger.client.get("/settings/credits").content.decode()
