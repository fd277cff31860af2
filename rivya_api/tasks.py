"""Celery tasks of rivya_api, one import line per resource sub-package (found by autodiscovery)."""

from rivya_api.chat.tasks import *  # noqa: F403
from rivya_api.credits.tasks import *  # noqa: F403
from rivya_api.files.tasks import *  # noqa: F403
from rivya_api.generations.tasks import *  # noqa: F403
from rivya_api.idempotency.tasks import *  # noqa: F403
