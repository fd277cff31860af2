"""Celery tasks of the Files resource: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task

from rivya_api.files import services

__all__ = ["file_expire_due"]


@shared_task(name="rivya_api.files.tasks.file_expire_due")
def file_expire_due() -> int:
    """Periodic: delete the bytes of expired and deleted files (see ``services.file_expire_due``)."""
    return services.file_expire_due()
