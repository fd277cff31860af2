"""WebSocket routes of the pages, and the ASGI application that serves them (see ``config/asgi.py``).

``websocket_application()`` is what a host puts under ``"websocket"`` in its
``ProtocolTypeRouter``: the session authenticates the user (``AuthMiddlewareStack``)
and the ``Origin`` header must be one of ``ALLOWED_HOSTS``
(``AllowedHostsOriginValidator``), so another site's page cannot open a socket
with the user's cookies (cross-site WebSocket hijacking).
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from rivya_api.pages.consumers import TaskUpdatesConsumer

websocket_urlpatterns = [
    path("ws/tasks", TaskUpdatesConsumer.as_asgi(), name="rivya-task-updates"),
]


def websocket_application() -> Any:
    return AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
