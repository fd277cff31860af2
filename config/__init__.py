"""The reference project: Rivya's apps embedded in a runnable Django project."""

from config.celery import app as celery_app

__all__ = ("celery_app",)
