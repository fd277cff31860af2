"""Celery tasks of rivya_billing: thin wrappers that call one service each.

``credits_expire_lapsed_holds`` runs on beat (``CELERY_BEAT_SCHEDULE`` in the
reference project's settings); without a broker the in-process runner of
``rivya_api.background`` queues it on the same schedule.
"""

from __future__ import annotations

from celery import shared_task

from rivya_billing import services


@shared_task(name="rivya_billing.tasks.credits_expire_lapsed_holds", ignore_result=True)
def credits_expire_lapsed_holds() -> int:
    """Expire holds whose lease lapsed (each in its own transaction; safe to overlap)."""
    return services.credits_expire_lapsed_holds()


@shared_task(name="rivya_billing.tasks.credits_expire_grants", ignore_result=True)
def credits_expire_grants() -> int:
    """Expire what is left, and not held, of grants past their ``expires_at`` (one grant per transaction)."""
    return services.credits_expire_grants()
