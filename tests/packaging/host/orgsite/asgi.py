"""The host's asgi.py, as docs/integration.md shows it (live task updates over WebSockets)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orgsite.settings")
django_asgi_app = get_asgi_application()  # sets Django up: import Rivya's routing after it

from channels.routing import ProtocolTypeRouter  # noqa: E402

from rivya_api.common.asgi import BodyLimitMiddleware  # noqa: E402
from rivya_api.pages.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter({"http": BodyLimitMiddleware(django_asgi_app), "websocket": websocket_application()})
