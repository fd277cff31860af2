"""WebSocket routes of the pages, for the host's ``URLRouter`` (see ``config/asgi.py``)."""

from django.urls import path

from rivya_api.pages.consumers import TaskUpdatesConsumer

websocket_urlpatterns = [
    path("ws/tasks", TaskUpdatesConsumer.as_asgi(), name="rivya-task-updates"),
]
