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
# collection, 16 ms (median) for a middle one and ~200 ms for a full one. So the import-time
# objects are frozen out of every collection and young ones collected less often (10,000).
# The middle generation is kept small (2): it holds every object that survived a young collection
# since its last run, so at 50 it grew to the open streams' whole state (~360 objects each:
# 365,000 with 1,000 streams open, one 150 ms pause). Survivors now reach the old generation
# within three young collections. A full collection waits for 100 middle ones and CPython's 25 %
# growth rule: rare, but it still walks every open stream (~200 ms with 1,000) when it comes.
gc.freeze()
gc.set_threshold(10_000, 2, 100)
