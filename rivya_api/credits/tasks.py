"""Celery tasks of the credits resource: thin wrappers over services."""

from __future__ import annotations

from celery import shared_task

from rivya_api.credits import events

__all__ = ["credits_low_events_publish_task"]


@shared_task(name="rivya_api.credits_low_events_publish", ignore_result=True)
def credits_low_events_publish_task() -> int:
    """Periodic: publish ``credits.low`` for each low-balance crossing not published yet (safe to overlap)."""
    return events.credits_low_events_publish()
