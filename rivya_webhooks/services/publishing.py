"""Publishing events into the outbox and re-arming deliveries; broker messages go out on commit."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from rivya_webhooks import ids
from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.exceptions import (
    EndpointDisabledError,
    InvalidParameterError,
    NothingToRedeliverError,
    PayloadTooLargeError,
    UnknownEventTypeError,
)
from rivya_webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from rivya_webhooks.registry import event_type_is_registered
from rivya_webhooks.services import pg_event
from rivya_webhooks.services._common import PENDING, Clock, iso, now_from, registered_names


def _envelope(*, event_id: str, type: str, created_at: datetime, data: dict[str, Any]) -> str:
    # Compact UTF-8 JSON, written once: these are the bytes that are signed, sent
    # on every attempt and returned by the event log.
    envelope = {"id": event_id, "type": type, "created_at": iso(created_at), "data": data}
    return json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def webhook_event_publish(
    *,
    account: Any,
    type: str,
    data: dict[str, Any],
    endpoints: Iterable[WebhookEndpoint] | None = None,
    clock: Clock | None = None,
) -> WebhookEvent:
    """Record an event and one pending delivery per enabled endpoint of ``account``
    subscribed to ``type`` (or to exactly ``endpoints``, whatever they subscribe to).

    Call it inside the transaction that makes the change the event reports: the
    rows commit or roll back with it, and delivery is queued only on commit. A
    rollback leaves no event, no delivery and no message. ``type`` must be
    registered (``rivya_webhooks.registry``); ``data`` must be a JSON object.
    Inside a caller's transaction the rows are written in a savepoint: a caller that
    catches an error from here keeps its own work.
    """
    return _publish(account=account, type=type, data=data, endpoints=endpoints, clock=clock, savepoint=True)


def _publish_joined(
    *,
    account: Any,
    type: str,
    data: dict[str, Any],
    endpoints: Iterable[WebhookEndpoint] | None = None,
    clock: Clock | None = None,
) -> WebhookEvent:
    """``webhook_event_publish`` with no savepoint of its own inside the caller's transaction (two
    round trips fewer on every generation's finish). Not public: only for a caller whose whole
    transaction a database error here ends (Rivya's own finish path); a caller that caught the
    error would find its transaction marked for rollback and lose its work."""
    return _publish(account=account, type=type, data=data, endpoints=endpoints, clock=clock, savepoint=False)


def _publish(
    *,
    account: Any,
    type: str,
    data: dict[str, Any],
    endpoints: Iterable[WebhookEndpoint] | None,
    clock: Clock | None,
    savepoint: bool,
) -> WebhookEvent:
    event = _event(account=account, type=type, data=data, clock=clock)
    now = event.created_at
    with transaction.atomic(savepoint=savepoint):
        if endpoints is None and pg_event.enabled():
            # One statement: the row, and whether the account has an enabled endpoint at all.
            targets = _targets(event=event, endpoints=None) if pg_event.insert(event) else []
        else:
            event.save(force_insert=True)
            targets = _targets(event=event, endpoints=endpoints)
        deliveries = WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    event=event,
                    endpoint=endpoint,
                    state=PENDING,
                    next_attempt_at=now,
                    dispatched_for=now,
                    created_at=now,
                )
                for endpoint in targets
            ]
        )
        _batches_on_commit().add(deliveries)
    return event


def _event(*, account: Any, type: str, data: dict[str, Any], clock: Clock | None) -> WebhookEvent:
    """The event to publish, unsaved, its type, data and size checked (``InvalidParameterError`` and
    the like); also for a caller that inserts it in a statement of its own (``pg_event._joined_insert``)."""
    if not event_type_is_registered(type):
        raise UnknownEventTypeError(type, param="type", valid=f"Registered types: {registered_names()}.")
    if not isinstance(data, dict):
        raise InvalidParameterError("data must be a JSON object.", param="data")
    now = now_from(clock)
    event_id = ids.event_id()
    try:
        payload = _envelope(event_id=event_id, type=type, created_at=now, data=data)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"data is not JSON-serialisable ({exc}).", param="data") from exc
    limit = int(webhooks_settings.MAX_PAYLOAD_BYTES)
    if len(payload.encode("utf-8")) > limit:
        raise PayloadTooLargeError(
            f"The event is larger than {limit} bytes; send links to large content instead.", param="data"
        )
    data = json.loads(payload)["data"]
    return WebhookEvent(public_id=event_id, account=account, type=type, data=data, payload=payload, created_at=now)


def _targets(*, event: WebhookEvent, endpoints: Iterable[WebhookEndpoint] | None) -> list[WebhookEndpoint]:
    if endpoints is None:
        subscribed = WebhookEndpoint.objects.filter(account_id=event.account_id, enabled=True)
        return [endpoint for endpoint in subscribed if endpoint.subscribes_to(event.type)]
    return [endpoint for endpoint in endpoints if endpoint.account_id == event.account_id]


def dispatch_on_commit(delivery_ids: list[int], *, countdown: float | None = None) -> None:
    """Queue one attempt task per delivery once the current transaction commits.

    ``robust``: a broker that is down must not fail the caller's commit; the rows
    are safe and the sweeper queues them later.
    """
    if not delivery_ids:
        return

    def send() -> None:
        from rivya_webhooks.tasks import webhook_delivery_attempt_task

        for delivery_id in delivery_ids:
            webhook_delivery_attempt_task.apply_async((delivery_id,), countdown=countdown)

    transaction.on_commit(send, robust=True)


# At most this many deliveries to one endpoint go in one broker message (see _Batches).
BATCH_SIZE = 25


class _Batches(dict[int, list[int]]):
    """The deliveries published in one transaction, by endpoint: on commit, one message per
    endpoint and ``BATCH_SIZE`` deliveries instead of one per delivery, so a transaction
    that publishes many events costs the workers few tasks. A lone delivery goes as before."""

    def add(self, deliveries: list[WebhookDelivery]) -> None:
        for delivery in deliveries:
            self.setdefault(delivery.endpoint_id, []).append(delivery.pk)

    def send(self) -> None:
        from rivya_webhooks.tasks import webhook_deliveries_attempt_task, webhook_delivery_attempt_task

        for delivery_ids in self.values():
            for start in range(0, len(delivery_ids), BATCH_SIZE):
                batch = delivery_ids[start : start + BATCH_SIZE]
                if len(batch) == 1:
                    webhook_delivery_attempt_task.apply_async((batch[0],))
                else:
                    webhook_deliveries_attempt_task.apply_async((batch,))


def _batches_on_commit() -> _Batches:
    """The current transaction's ``_Batches``, registered with ``on_commit`` on first use.

    Safe to reuse whatever savepoint registered it: a rolled-back savepoint takes its
    callbacks out of ``run_on_commit``, and one still there can only be taken out later
    by rolling back a savepoint we are inside, which rolls back our deliveries too. Ids
    of rows rolled back in an inner savepoint may stay in it; their task finds nothing.
    """
    for _savepoints, callback, _robust in reversed(transaction.get_connection().run_on_commit):
        if isinstance(getattr(callback, "__self__", None), _Batches):
            return callback.__self__
    batches = _Batches()
    # A bound method, not the instance: a robust hook that fails is logged by its __qualname__,
    # which an instance lacks (the AttributeError would escape the commit: a 500 while the broker is down).
    transaction.on_commit(batches.send, robust=True)
    return batches


def webhook_event_redeliver(
    *, event: WebhookEvent, endpoint: WebhookEndpoint | None = None, clock: Clock | None = None
) -> list[WebhookDelivery]:
    """Send the event again now, to every enabled endpoint it has a delivery for (or to
    ``endpoint`` only, creating its delivery if the event never had one).

    Each delivery is re-armed: pending, due now, a fresh retry schedule, and the
    next attempt is recorded as manual. Like every delivery it lives in the
    outbox, so a lost broker message only delays it. Disabled endpoints are
    skipped; when nothing is left, ``NothingToRedeliverError``.
    """
    now = now_from(clock)
    with transaction.atomic():
        if endpoint is not None:
            if endpoint.account_id != event.account_id:
                raise NothingToRedeliverError("No such endpoint.", param="endpoint_id")
            if not endpoint.enabled:
                raise EndpointDisabledError("The endpoint is disabled; enable it first.", param="endpoint_id")
            delivery, _ = WebhookDelivery.objects.get_or_create(
                event=event, endpoint=endpoint, defaults={"next_attempt_at": now, "created_at": now}
            )
            delivery_ids = [delivery.pk]
        else:
            delivery_ids = list(event.deliveries.filter(endpoint__enabled=True).values_list("pk", flat=True))
            if not delivery_ids:
                raise NothingToRedeliverError("The event has no delivery to an enabled endpoint.")
        WebhookDelivery.objects.filter(pk__in=delivery_ids).update(
            state=PENDING,
            retry_count=0,
            next_attempt_at=now,
            next_trigger=WebhookDelivery.Trigger.MANUAL,
            dispatched_for=now,
            # An attempt in flight under an older claim no longer owns the schedule.
            claim_token="",
        )
        dispatch_on_commit(delivery_ids)
    return list(WebhookDelivery.objects.filter(pk__in=delivery_ids).select_related("endpoint"))
