"""Celery tasks of the chat package (thin: they call one service)."""

from __future__ import annotations

import logging

from celery import shared_task

from rivya_api.chat.services import chat_turns_fail_stale

__all__ = ["chat_turns_fail_stale_task"]

logger = logging.getLogger(__name__)


@shared_task(name="rivya_api.chat_turns_fail_stale")
def chat_turns_fail_stale_task() -> int:
    """Fail turns whose process died mid-turn, releasing their holds (beat: every minute)."""
    failed = chat_turns_fail_stale()
    if failed:
        logger.warning("Failed %s stale chat turns", failed)
    return failed
