"""Reading chat sessions: always through the account, so another account's session is simply absent."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from rivya_api.chat.models import ChatMessage, ChatSession


def chat_sessions_for_account(*, account: Any) -> QuerySet[ChatSession]:
    """The account's API sessions (the list is paginated newest first by the caller)."""
    return ChatSession.objects.filter(account=account, source=ChatSession.Source.API)


def chat_session_get(*, account: Any, session_id: str) -> ChatSession | None:
    """One API session of the account with ``ordered_messages`` loaded, or None."""
    messages = ChatMessage.objects.order_by("created_at", "pk")
    return (
        chat_sessions_for_account(account=account)
        .prefetch_related(Prefetch("messages", queryset=messages, to_attr="ordered_messages"))
        .filter(public_id=session_id)
        .first()
    )
