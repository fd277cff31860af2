"""Live task updates: status changes are pushed to the account's browsers after commit.

The group name is per account; the Channels consumer of the settings pages joins
it for the logged-in user's account. Sending happens on commit, so a browser
never sees a state that was rolled back. The same moment sends the
``rivya_api.signals.generation_updated`` signal for the host's own receivers.
Channels is optional (the ``channels`` extra): without it only the signal is sent.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction

logger = logging.getLogger(__name__)


def account_group(account_id: Any) -> str:
    return f"rivya.account.{account_id}"


def generation_notify_on_commit(account_id: Any, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: _notify(account_id, payload))


def _notify(account_id: Any, payload: dict[str, Any]) -> None:
    from rivya_api.generations.models import GenerationTask
    from rivya_api.signals import generation_updated

    for receiver, result in generation_updated.send_robust(GenerationTask, account_id=account_id, task=payload):
        if isinstance(result, Exception):
            logger.error("generation_updated receiver %r failed", receiver, exc_info=result)
    _send(account_id, payload)


def _send(account_id: Any, payload: dict[str, Any]) -> None:
    try:
        from channels.layers import get_channel_layer
    except ImportError:  # live updates need the channels extra; the pages poll without it
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(account_group(account_id), {"type": "generation.update", "task": payload})
    except Exception:  # live updates are best effort; the task state is already committed
        logger.warning("Could not push a live update for account %s", account_id, exc_info=True)
