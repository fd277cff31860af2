"""ASGI entry point: ``config.asgi:application`` (HTTP through Django, WebSockets through Channels).

Without a broker this process also runs the periodic sweeps (holds, deliveries,
queued tasks), since no ``celery beat`` is there to do it.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application() does first

from config.middleware import ASGIHandler  # noqa: E402  (imports Django's middleware: after setup)

django_application = ASGIHandler()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (after Django is set up)
from django.conf import settings  # noqa: E402

from config.celery import app as celery_app  # noqa: E402
from rivya_api.background import start_periodic_runner  # noqa: E402
from rivya_api.pages.routing import websocket_application  # noqa: E402

# WebSockets: live task updates for the settings pages and Studio (/ws/tasks), authenticated
# by the Django session; the channel layer is in memory, or Redis when REDIS_URL is set.
application = ProtocolTypeRouter({"http": django_application, "websocket": websocket_application()})

if celery_app.conf.get("rivya_in_process") and settings.RIVYA_IN_PROCESS_BEAT:
    start_periodic_runner(celery_app)
