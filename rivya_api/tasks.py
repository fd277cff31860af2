"""Celery tasks of rivya_api, one import line per resource sub-package.

``app.autodiscover_tasks()`` imports ``<app>.tasks`` of each installed app;
this module makes it find the tasks living in the sub-packages.
"""

from rivya_api.idempotency.tasks import *  # noqa: F403
