"""Celery tasks of rivya_webhooks: thin wrappers, primitive ids in, one service each.

They go to Celery's default queue, which a plain ``celery -A config worker``
consumes. Due times live in the database, not in the broker: the only
countdowns are retries due within ``COUNTDOWN_MAX_SECONDS`` (well under the
Redis visibility timeout), and the sweeper covers any message that is lost.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from rivya_webhooks.services import (
    webhook_deliveries_attempt,
    webhook_deliveries_sweep,
    webhook_delivery_attempt,
    webhook_events_cleanup,
)


@shared_task(
    name="rivya_webhooks.deliver",
    bind=True,
    ignore_result=True,
    # A database hiccup: try again soon; if that fails too, the sweeper re-queues the row.
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    max_retries=3,
)
def webhook_delivery_attempt_task(self, delivery_id: int) -> None:  # type: ignore[no-untyped-def]
    webhook_delivery_attempt(delivery_id=delivery_id, task_id=self.request.id or "")


@shared_task(
    name="rivya_webhooks.deliver_batch",
    bind=True,
    ignore_result=True,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    max_retries=3,
)
def webhook_deliveries_attempt_task(self, delivery_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    # A retry runs the whole batch again: deliveries already attempted are no longer due.
    webhook_deliveries_attempt(delivery_ids=delivery_ids, task_id=self.request.id or "")


@shared_task(name="rivya_webhooks.sweep", ignore_result=True)
def webhook_deliveries_sweep_task() -> int:
    return webhook_deliveries_sweep()


@shared_task(name="rivya_webhooks.cleanup", ignore_result=True)
def webhook_events_cleanup_task() -> int:
    return webhook_events_cleanup()
