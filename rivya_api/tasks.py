"""Celery tasks of rivya_api, one import line per resource sub-package (autodiscovery finds this module)."""

from rivya_api.chat.tasks import *  # noqa: F403
