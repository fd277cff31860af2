"""The Celery app. ``celery -A config worker`` and ``celery -A config beat`` find it here.

Without ``REDIS_URL`` there is no broker: tasks run in the web process through
``rivya_api.background`` (see ``CELERY_RIVYA_IN_PROCESS`` in settings).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config", task_cls="rivya_api.background:BackgroundTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
