"""Live task updates for the account's browsers, over a WebSocket authenticated by the Django session.

A browser of a logged-in user connects to ``/ws/tasks``; the consumer joins the
Channels group of that user's account (``rivya.account.<pk>``, see
``rivya_api.generations.live``) and forwards each ``generation.update``
message, which the generation services send after the transaction that changed
the task has committed. Nobody else's group is ever joined: the group is
derived from the session's user on the server, never from anything the client
sends. Anonymous connections are closed before they are accepted.

The client may send ``{"type": "tasks.sync", "ids": [...]}`` after connecting;
the consumer answers with the current state of those of the account's tasks,
which closes the gap between rendering the page and subscribing without a
polling request.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from rivya_api.accounts import account_for_user
from rivya_api.generations.live import account_group
from rivya_api.generations.presenters import generation_payload
from rivya_api.generations.selectors import generation_list

logger = logging.getLogger(__name__)

# Close codes in the private-use range (4000-4999): the page stops retrying on them.
CLOSE_UNAUTHENTICATED = 4401
MAX_SYNC_IDS = 100


def _tasks_sync(*, account: Any, ids: list[str]) -> list[dict[str, Any]]:
    tasks = generation_list(account=account).filter(public_id__in=ids[:MAX_SYNC_IDS]).prefetch_related("outputs")
    return [generation_payload(task) for task in tasks]


class TaskUpdatesConsumer(AsyncJsonWebsocketConsumer):
    """Forwards ``generation.update`` messages of the session user's account to the browser."""

    group_name: str | None = None
    account: Any = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.account = await database_sync_to_async(account_for_user)(user)
        self.group_name = account_group(self.account.pk)
        # Join before accepting, so no update committed after the handshake is missed.
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group_name is not None:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "tasks.sync":
            return
        ids = [value for value in content.get("ids") or [] if isinstance(value, str)]
        if not ids:
            return
        for payload in await database_sync_to_async(_tasks_sync)(account=self.account, ids=ids):
            await self.send_json({"type": "generation.update", "task": payload})

    async def generation_update(self, message: dict[str, Any]) -> None:
        """A task of this account changed (sent on commit by ``rivya_api.generations.live``)."""
        await self.send_json({"type": "generation.update", "task": message["task"]})
