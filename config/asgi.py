"""ASGI entry point: ``config.asgi:application`` (HTTP through Django, WebSockets through Channels).

Without a broker this process also runs the periodic sweeps (holds, deliveries,
queued tasks), since no ``celery beat`` is there to do it.
"""

import gc
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
from rivya_api.common.asgi import BodyLimitMiddleware  # noqa: E402
from rivya_api.pages.routing import websocket_application  # noqa: E402

# WebSockets: live task updates for the settings pages and Studio (/ws/tasks), authenticated
# by the Django session; the channel layer is in memory, or Redis when REDIS_URL is set.
# Oversize API bodies are refused (413) before Django's handler would read them whole.
application = ProtocolTypeRouter(
    {"http": BodyLimitMiddleware(django_application), "websocket": websocket_application()}
)

if celery_app.conf.get("rivya_in_process") and settings.RIVYA_IN_PROCESS_BEAT:
    start_periodic_runner(celery_app)

# The collector's pauses are what long-lived streams feel. With 500 streams open on one process,
# CPython's default thresholds (700, 10, 10) stopped the event loop up to 30 ms for a young
# collection, 16 ms (median) for a middle one and ~200 ms for a full one, and the added gap P99
# while holding them was +32 ms. With the import-time objects frozen out of every collection
# and rarer young collections: +8 ms (bench/chat_stream.py capacity). Full collections still
# run when long-lived objects pile up (CPython's 25 % rule), just not every few seconds.
gc.freeze()
gc.set_threshold(10_000, 50, 1000)
