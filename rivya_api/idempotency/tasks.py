"""Celery tasks of the idempotency package (thin: they call one service)."""

from __future__ import annotations

import logging

from celery import shared_task

from rivya_api.idempotency.services import idempotency_records_purge

__all__ = ["idempotency_records_purge_task"]

logger = logging.getLogger(__name__)


@shared_task
def idempotency_records_purge_task() -> int:
    """Delete expired idempotency records (beat: hourly)."""
    deleted = idempotency_records_purge()
    if deleted:
        logger.info("Purged %s expired idempotency records", deleted)
    return deleted
