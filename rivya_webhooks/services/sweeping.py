"""The sweeper that re-queues due deliveries, and event retention."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q

from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from rivya_webhooks.services._common import PENDING, Clock, iso, logger, now_from
from rivya_webhooks.services.publishing import dispatch_on_commit


def webhook_deliveries_sweep(
    *, clock: Clock | None = None, limit: int | None = None, endpoint: WebhookEndpoint | None = None
) -> int:
    """Queue every due pending delivery of an enabled endpoint that no broker message is
    known to be carrying; returns how many were queued.

    "Known to be carrying": ``dispatched_for`` is set when a message is queued and
    cleared when a worker claims the row; a due row whose message was queued more
    than ``REDISPATCH_AFTER`` ago is presumed lost and queued again. Rows are taken
    with ``SKIP LOCKED`` where the database has it, so concurrent sweepers (several
    web processes running the in-process beat) split the work. Duplicates that slip
    through are harmless: only one worker can claim a due attempt.
    """
    now = now_from(clock)
    limit = limit or int(webhooks_settings.SWEEP_BATCH_SIZE)
    stale = now - timedelta(seconds=int(webhooks_settings.REDISPATCH_AFTER))
    with transaction.atomic():
        due = WebhookDelivery.objects.filter(state=PENDING, next_attempt_at__lte=now, endpoint__enabled=True).filter(
            Q(dispatched_for__isnull=True) | Q(dispatched_for__lte=stale)
        )
        if endpoint is not None:
            due = due.filter(endpoint=endpoint)
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        delivery_ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
        if delivery_ids:
            WebhookDelivery.objects.filter(pk__in=delivery_ids).update(dispatched_for=now)
            dispatch_on_commit(delivery_ids)
    if delivery_ids:
        logger.info("Webhook sweeper queued %s due deliveries", len(delivery_ids))
    return len(delivery_ids)


def webhook_events_cleanup(*, clock: Clock | None = None, batch_size: int = 500) -> int:
    """Delete events older than ``EVENT_RETENTION_DAYS`` (30) with their deliveries and
    attempts, in batches; events still being delivered to an enabled endpoint stay."""
    cutoff = now_from(clock) - timedelta(days=int(webhooks_settings.EVENT_RETENTION_DAYS))
    busy = WebhookDelivery.objects.filter(state=PENDING, endpoint__enabled=True, event__created_at__lt=cutoff)
    deleted = 0
    while True:
        batch = list(
            WebhookEvent.objects.filter(created_at__lt=cutoff)
            .exclude(pk__in=busy.values("event_id"))
            .order_by("created_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            break
        with transaction.atomic():
            WebhookEvent.objects.filter(pk__in=batch).delete()
        deleted += len(batch)
    if deleted:
        logger.info("Deleted %s webhook events older than %s", deleted, iso(cutoff))
    return deleted
