"""Reads of rivya_webhooks: endpoints and the event log, always scoped to one account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, WebhookEvent

# Values of the event log's delivery-state filter.
DELIVERY_STATE_FILTERS = ("undelivered", "pending", "failed", "succeeded")


def webhook_endpoint_list(*, account: Any) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(account=account).order_by("-created_at", "-pk")


def webhook_endpoint_get(*, account: Any, public_id: str) -> WebhookEndpoint:
    """The account's endpoint; another account's id raises ``DoesNotExist`` like an unknown one."""
    return WebhookEndpoint.objects.get(account=account, public_id=public_id)


def _with_deliveries(queryset: QuerySet[WebhookEvent]) -> QuerySet[WebhookEvent]:
    attempts = WebhookDeliveryAttempt.objects.order_by("created_at", "pk")
    deliveries = (
        WebhookDelivery.objects.select_related("endpoint")
        .order_by("created_at", "pk")
        .prefetch_related(Prefetch("attempts", queryset=attempts))
    )
    return queryset.prefetch_related(Prefetch("deliveries", queryset=deliveries))


def webhook_event_list(
    *,
    account: Any,
    type: str | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
    delivery_state: str | None = None,
) -> QuerySet[WebhookEvent]:
    """The account's events, newest first, with deliveries and attempts prefetched.

    ``delivery_state``: ``undelivered`` — some endpoint has not got it (pending or
    failed); ``pending`` / ``failed`` — some delivery is in that state;
    ``succeeded`` — it has deliveries and every one succeeded.
    """
    queryset = WebhookEvent.objects.filter(account=account)
    if type:
        queryset = queryset.filter(type=type)
    if created_gte is not None:
        queryset = queryset.filter(created_at__gte=created_gte)
    if created_lt is not None:
        queryset = queryset.filter(created_at__lt=created_lt)
    if delivery_state:
        if delivery_state not in DELIVERY_STATE_FILTERS:
            raise ValueError(f"delivery_state must be one of {', '.join(DELIVERY_STATE_FILTERS)}")
        of_event = WebhookDelivery.objects.filter(event=OuterRef("pk"))
        not_succeeded = of_event.exclude(state=WebhookDelivery.State.SUCCEEDED)
        if delivery_state == "undelivered":
            queryset = queryset.filter(Exists(not_succeeded))
        elif delivery_state in ("pending", "failed"):
            queryset = queryset.filter(Exists(of_event.filter(state=delivery_state)))
        else:
            queryset = queryset.filter(Exists(of_event)).exclude(Exists(not_succeeded))
    return _with_deliveries(queryset).order_by("-created_at", "-pk")


def webhook_event_get(*, account: Any, public_id: str) -> WebhookEvent:
    """The account's event with deliveries and attempts; another account's raises ``DoesNotExist``."""
    return _with_deliveries(WebhookEvent.objects.filter(account=account)).get(public_id=public_id)
