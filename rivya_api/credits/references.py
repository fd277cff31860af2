"""Ledger references as the API shows them and as ``?reference=`` takes them.

Billing keeps the reference the work gave its hold: the task id (``task_…``) for a
generation, ``chat_turn:<msg_…>`` for a chat turn (the turn's assistant message id).
The API shows a turn's entries with that message id alone, and ``?reference=`` takes
the public id a client has: a task, any message of a turn, or a chat session (every
turn of it). Anything else (a support action's reference) matches as it is.
"""

from __future__ import annotations

from typing import Any

from rivya_api.chat.selectors import chat_turn_ids_for
from rivya_api.chat.services import chat_turn_reference

CHAT_TURN_PREFIX = chat_turn_reference("")


def public_reference(reference: str) -> str:
    """What the API shows for a stored reference: ``msg_…`` for a chat turn's, else the reference."""
    return reference.removeprefix(CHAT_TURN_PREFIX)


def ledger_references(*, account: Any, reference: str) -> list[str]:
    """The stored references a client's ``reference`` filter names (see the module docstring)."""
    if reference.startswith(("msg_", "chat_")) and not reference.startswith(CHAT_TURN_PREFIX):
        return [chat_turn_reference(turn_id) for turn_id in chat_turn_ids_for(account=account, public_id=reference)]
    return [reference]
