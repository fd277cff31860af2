"""WSGI entry point (the ASGI one, ``config.asgi``, is what the project serves with)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
