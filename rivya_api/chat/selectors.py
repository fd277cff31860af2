"""Reading chat sessions: always through the account, so another account's session is simply absent."""

from __future__ import annotations

import time
from typing import Any

from django.db.models import Prefetch, QuerySet

from rivya_api.chat.models import ChatMessage, ChatSession


def chat_sessions_for_account(*, account: Any) -> QuerySet[ChatSession]:
    """The account's API sessions (the list is paginated newest first by the caller)."""
    return ChatSession.objects.filter(account=account, source=ChatSession.Source.API)


def chat_session_get(*, account: Any, session_id: str, with_messages: bool = True) -> ChatSession | None:
    """One API session of the account (with ``ordered_messages`` loaded if asked), or None."""
    sessions = chat_sessions_for_account(account=account).filter(public_id=session_id)
    if with_messages:
        messages = ChatMessage.objects.order_by("created_at", "pk")
        sessions = sessions.prefetch_related(Prefetch("messages", queryset=messages, to_attr="ordered_messages"))
    return sessions.first()


def chat_session_latest_turn(*, session: ChatSession) -> ChatMessage | None:
    """The assistant message of the session's latest turn, or None."""
    return session.messages.filter(role=ChatMessage.Role.ASSISTANT).order_by("-created_at", "-pk").first()


def chat_turn_wait_ended(*, turn_id: str, timeout: float, interval: float = 0.05) -> ChatMessage:
    """The turn's assistant message once it is no longer in progress (or as it is after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        message = ChatMessage.objects.get(public_id=turn_id)
        if message.status != ChatMessage.Status.IN_PROGRESS or time.monotonic() >= deadline:
            return message
        time.sleep(interval)


def chat_turn_for_idempotency_key(*, account: Any, key: str) -> ChatMessage | None:
    """The running streamed turn the account started with this Idempotency-Key, or None."""
    return (
        ChatMessage.objects.select_related("session")
        .filter(
            session__account=account,
            role=ChatMessage.Role.ASSISTANT,
            status=ChatMessage.Status.IN_PROGRESS,
            idempotency_key=key,
        )
        .order_by("-created_at")
        .first()
    )


def chat_turn_sessions(*, account: Any, turn_ids: list[str]) -> dict[str, str]:
    """``{turn_id: session public id}`` for those of ``turn_ids`` that are turns of the account's sessions."""
    rows = (
        ChatMessage.objects.filter(session__account=account, turn_id__in=turn_ids)
        .values_list("turn_id", "session__public_id")
        .distinct()
    )
    return dict(rows)


def chat_turn_ids_for(*, account: Any, public_id: str) -> list[str]:
    """The turns a public id names: a message's (``msg_…``) or every turn of a session (``chat_…``).

    Any session of the account counts (API or Studio): they spend one wallet. Another
    account's message or session names no turn.
    """
    messages = ChatMessage.objects.filter(session__account=account)
    if public_id.startswith("msg_"):
        messages = messages.filter(public_id=public_id)
    elif public_id.startswith("chat_"):
        messages = messages.filter(session__public_id=public_id, role=ChatMessage.Role.ASSISTANT)
    else:
        return []
    return list(messages.values_list("turn_id", flat=True).distinct())
