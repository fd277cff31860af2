"""A WebSocket test client for ASGI applications, on asgiref's ``ApplicationCommunicator``.

Channels ships one (``channels.testing.WebsocketCommunicator``), but importing
``channels.testing`` pulls in its live-server test case and with it Daphne,
which this project does not install; this is the part we need.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.testing import ApplicationCommunicator


class WebsocketClient(ApplicationCommunicator):
    def __init__(self, application: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        scope = {"type": "websocket", "path": path, "query_string": b"", "headers": headers or [], "subprotocols": []}
        super().__init__(application, scope)

    async def connect(self, timeout: float = 2) -> tuple[bool, Any]:
        """``(True, subprotocol)`` when accepted, ``(False, close code)`` when refused."""
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept", response
        return True, response.get("subprotocol")

    async def send_json_to(self, data: Any) -> None:
        await self.send_input({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json_from(self, timeout: float = 2) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 2) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
