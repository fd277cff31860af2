"""Business operations of rivya_webhooks: endpoints, publishing, delivery, sweeping, retention.

Every service takes keyword-only arguments. Those that depend on time take a
``clock`` (a callable returning an aware ``datetime``; ``django.utils.timezone.now``
by default) and those that touch the network take a ``resolver`` (a callable
``host -> [ip, ...]``; ``RIVYA_WEBHOOKS["RESOLVER"]`` by default), so tests
drive days of retries and DNS rebinding without patching anything.

The clock schedules work; the ``webhook-timestamp`` a receiver sees is always
the real wall clock, because receivers compare it with their own.

Durability: an event and its deliveries are rows written in the caller's
transaction; broker messages are only a way to start sooner. Every message is
queued on commit, and the sweeper (beat, or the in-process runner) queues
again whatever is due and was not picked up, so a broker that loses messages
delays deliveries but never loses them.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from rivya_webhooks import ids, metrics, network
from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.crypto import secret_encrypt, secret_generate
from rivya_webhooks.exceptions import (
    EndpointDisabledError,
    InvalidEventTypesError,
    InvalidParameterError,
    InvalidWebhookURLError,
    NothingToRedeliverError,
    PayloadTooLargeError,
    UnknownEventTypeError,
)
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, WebhookEvent
from rivya_webhooks.registry import ALL_EVENTS, event_type_is_registered
from rivya_webhooks.registry import event_types as registered_event_types
from rivya_webhooks.schedule import parse_retry_after, retry_delay
from rivya_webhooks.signing import signed_headers

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

PENDING = WebhookDelivery.State.PENDING
SUCCEEDED = WebhookDelivery.State.SUCCEEDED
FAILED = WebhookDelivery.State.FAILED
MAX_DESCRIPTION = 500


def _now(clock: Clock | None) -> datetime:
    return (clock or timezone.now)()


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the API renders every timestamp."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Endpoints ----------------------------------------------------------------------


def _registered_names() -> str:
    return ", ".join(event_type.name for event_type in registered_event_types())


def event_types_validate(event_types: Any) -> list[str]:
    """A subscription list: registered type names without duplicates, or ``["*"]``."""
    if (
        not isinstance(event_types, (list, tuple))
        or not event_types
        or not all(isinstance(item, str) for item in event_types)
    ):
        raise InvalidEventTypesError(
            'event_types must be a non-empty list of event type names, or ["*"] for every type.',
            param="event_types",
        )
    for name in event_types:
        if name != ALL_EVENTS and not event_type_is_registered(name):
            valid = f'Valid types: {_registered_names()}; or "{ALL_EVENTS}" for every type, also those added later.'
            raise UnknownEventTypeError(name, param="event_types", valid=valid)
    if ALL_EVENTS in event_types:
        return [ALL_EVENTS]
    return list(dict.fromkeys(event_types))


def _description_validate(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidParameterError(
            f"description must be a string of at most {MAX_DESCRIPTION} characters.", param="description"
        )
    return description


def webhook_endpoint_create(
    *,
    account: Any,
    url: str,
    event_types: Sequence[str],
    description: str = "",
    resolver: network.Resolver | None = None,
    clock: Clock | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Create an enabled endpoint and return it with its secret (the only time it is shown).

    The URL passes the whole SSRF check first (scheme, credentials, https unless
    DEBUG, the host resolves and only to public addresses); nothing is written
    when it fails. One INSERT, in the caller's transaction if there is one.
    """
    network.url_validate(url, resolver=resolver)
    types = event_types_validate(event_types)
    description = _description_validate(description)
    secret = secret_generate()
    now = _now(clock)
    endpoint = WebhookEndpoint.objects.create(
        account=account,
        url=url,
        description=description,
        event_types=types,
        secret_encrypted=secret_encrypt(secret),
        created_at=now,
        updated_at=now,
    )
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
    resolver: network.Resolver | None = None,
    clock: Clock | None = None,
) -> WebhookEndpoint:
    """Change what is given (``None`` leaves a field alone).

    A new URL passes the creation checks. Enabling a disabled endpoint clears
    its failure clock and resumes its pending deliveries (due ones are queued on
    commit); disabling it by hand pauses them.
    """
    if url is not None and url != endpoint.url:
        network.url_validate(url, resolver=resolver)
    types = event_types_validate(event_types) if event_types is not None else None
    description = _description_validate(description) if description is not None else None
    now = _now(clock)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        fields = ["updated_at"]
        if url is not None:
            endpoint.url = url
            fields.append("url")
        if types is not None:
            endpoint.event_types = types
            fields.append("event_types")
        if description is not None:
            endpoint.description = description
            fields.append("description")
        resumed = False
        if enabled is not None and enabled != endpoint.enabled:
            endpoint.enabled = enabled
            if enabled:
                endpoint.disabled_reason = WebhookEndpoint.DisabledReason.NONE
                endpoint.disabled_at = None
                endpoint.failing_since = None
                resumed = True
            else:
                endpoint.disabled_reason = WebhookEndpoint.DisabledReason.MANUAL
                endpoint.disabled_at = now
            fields += ["enabled", "disabled_reason", "disabled_at", "failing_since"]
        endpoint.updated_at = now
        endpoint.save(update_fields=fields)
        if resumed:
            webhook_deliveries_sweep(clock=clock, endpoint=endpoint)
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries and attempts; its pending work stops. Events stay."""
    endpoint.delete()


def webhook_endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, clock: Clock | None = None
) -> tuple[WebhookEndpoint, str]:
    """Give the endpoint a new secret and return it (shown only now).

    The old secret keeps signing, as a second ``v1`` token, for
    ``SECRET_ROTATION_OVERLAP`` (24 h), so receivers can switch without losing
    a request. Rotating again within the overlap drops the oldest secret.
    """
    now = _now(clock)
    overlap = timedelta(seconds=int(webhooks_settings.SECRET_ROTATION_OVERLAP))
    secret = secret_generate()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if overlap > timedelta(0):
            endpoint.previous_secret_encrypted = endpoint.secret_encrypted
            endpoint.previous_secret_expires_at = now + overlap
        else:
            endpoint.previous_secret_encrypted = ""
            endpoint.previous_secret_expires_at = None
        endpoint.secret_encrypted = secret_encrypt(secret)
        endpoint.updated_at = now
        endpoint.save(
            update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at", "updated_at"]
        )
    return endpoint, secret


def webhook_endpoint_test(*, endpoint: WebhookEndpoint, clock: Clock | None = None) -> WebhookEvent:
    """Publish a ``webhook.test`` event to this endpoint only, whatever types it subscribes to.

    The endpoint is locked first, so one deleted meanwhile raises ``WebhookEndpoint.DoesNotExist``
    (as update and rotation do) instead of a delivery row pointing at nothing.
    """
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().select_related("account").get(pk=endpoint.pk)
        if not endpoint.enabled:
            raise EndpointDisabledError("The endpoint is disabled; enable it before sending a test event.")
        return webhook_event_publish(
            account=endpoint.account,
            type="webhook.test",
            data={"endpoint_id": endpoint.public_id, "message": "A test event from the endpoint's test action."},
            endpoints=[endpoint],
            clock=clock,
        )


def webhook_endpoint_disable(*, endpoint: WebhookEndpoint, reason: str, clock: Clock | None = None) -> bool:
    """Disable an enabled endpoint for ``reason`` (gone or failing) and record a
    ``webhook_endpoint.disabled`` event, in one transaction. False if it was already disabled."""
    now = _now(clock)
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now
        )
        if not changed:
            return False
        endpoint.refresh_from_db()
        logger.warning("Webhook endpoint %s disabled: %s", endpoint.public_id, reason)
        webhook_event_publish(
            account=endpoint.account,
            type="webhook_endpoint.disabled",
            data={
                "endpoint_id": endpoint.public_id,
                "url": endpoint.url,
                "reason": reason,
                "failing_since": iso(endpoint.failing_since) if endpoint.failing_since else None,
                "disabled_at": iso(now),
            },
            clock=clock,
        )
    return True


# --- Publishing ---------------------------------------------------------------------


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
    """
    if not event_type_is_registered(type):
        raise UnknownEventTypeError(type, param="type", valid=f"Registered types: {_registered_names()}.")
    if not isinstance(data, dict):
        raise InvalidParameterError("data must be a JSON object.", param="data")
    now = _now(clock)
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
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            public_id=event_id,
            account=account,
            type=type,
            data=json.loads(payload)["data"],
            payload=payload,
            created_at=now,
        )
        if endpoints is None:
            targets = [
                endpoint
                for endpoint in WebhookEndpoint.objects.filter(account=account, enabled=True)
                if endpoint.subscribes_to(type)
            ]
        else:
            targets = [endpoint for endpoint in endpoints if endpoint.account_id == event.account_id]
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
        _dispatch_on_commit([delivery.pk for delivery in deliveries])
    return event


def _dispatch_on_commit(delivery_ids: list[int], *, countdown: float | None = None) -> None:
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
    now = _now(clock)
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
        _dispatch_on_commit(delivery_ids)
    return list(WebhookDelivery.objects.filter(pk__in=delivery_ids).select_related("endpoint"))


# --- Delivery -----------------------------------------------------------------------


def _client_for(resolver: network.Resolver | None, policy: network.NetworkPolicy) -> tuple[Any, bool]:
    """The process's shared keep-alive client, or a private one for an injected resolver."""
    if resolver is None:
        return network.shared_client(resolver=webhooks_settings.RESOLVER, policy=policy), False
    return network.client_build(resolver=resolver, policy=policy), True


def _send(
    *, endpoint: WebhookEndpoint, event: WebhookEvent, now: datetime, resolver: network.Resolver | None
) -> network.SendResult:
    try:
        # Scheme, credentials and https-unless-DEBUG again: settings may have changed
        # since creation. The address check happens inside the connection.
        network.url_check_syntax(endpoint.url)
    except InvalidWebhookURLError as exc:
        return network.SendResult(error="invalid_url", error_message=str(exc))
    headers = signed_headers(
        msg_id=event.public_id,
        timestamp=int(time.time()),
        body=event.payload,
        secrets=endpoint.signing_secrets(now),
    )
    client, owned = _client_for(resolver, network.policy_from_settings())
    try:
        return network.post(
            client=client,
            url=endpoint.url,
            body=event.payload.encode("utf-8"),
            headers=headers,
            timeout=float(webhooks_settings.TIMEOUT),
            body_limit=int(webhooks_settings.RESPONSE_BODY_LIMIT),
        )
    finally:
        if owned:
            client.close()


def _release_pooled_connection() -> None:
    """Hand a pooled database connection back before waiting on a receiver.

    A receiver that takes the whole timeout would otherwise hold a connection of
    the pool for 15 s, and a few slow endpoints would starve every other delivery
    of the worker. Without a pool, closing would cost a reconnect, so we keep it.
    """
    if connection.in_atomic_block or not (connection.settings_dict.get("OPTIONS") or {}).get("pool"):
        return
    connection.close()


def webhook_delivery_attempt(
    *,
    delivery_id: int,
    task_id: str = "",
    clock: Clock | None = None,
    resolver: network.Resolver | None = None,
    rng: random.Random | None = None,
) -> WebhookDeliveryAttempt | None:
    """Send one due delivery once and record the outcome; ``None`` when there was nothing to do.

    Claim: a conditional UPDATE moves ``next_attempt_at`` forward by a lease, so
    of several workers handed the same delivery (the original message, the
    sweeper's, a broker redelivery) exactly one sends; if it dies mid-request the
    lease runs out and the delivery is due again. The request itself runs outside
    any transaction. The outcome is one transaction: the attempt row, the
    delivery's next state, the endpoint's failure clock, and, when the endpoint
    answered 410 or has failed for ``DISABLE_AFTER_FAILING_FOR``, its disabling.

    Outcomes: 2xx succeeds. Anything else fails and is retried after the next
    step of ``RETRY_SCHEDULE`` (jittered; at least ``Retry-After`` on 429/503),
    until the schedule is used up. A 3xx is a failure naming its Location.
    """
    now = _now(clock)
    try:
        # event.data is not needed to send: the envelope text is the body.
        delivery = WebhookDelivery.objects.select_related("event", "endpoint").defer("event__data").get(pk=delivery_id)
    except WebhookDelivery.DoesNotExist:
        return None  # deleted with its endpoint or event (retention) since it was queued
    if (
        delivery.state != PENDING
        or not delivery.endpoint.enabled
        or delivery.next_attempt_at is None
        or delivery.next_attempt_at > now
    ):
        return None
    token = uuid.uuid4().hex
    lease = timedelta(seconds=2 * float(webhooks_settings.TIMEOUT) + 60)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, state=PENDING, next_attempt_at=delivery.next_attempt_at
    ).update(next_attempt_at=now + lease, claim_token=token, dispatched_for=None)
    if not claimed:
        return None
    endpoint, event = delivery.endpoint, delivery.event
    _release_pooled_connection()
    result = _send(endpoint=endpoint, event=event, now=now, resolver=resolver)
    finished = _now(clock)
    return _attempt_record(
        delivery=delivery,
        token=token,
        result=result,
        started=now,
        finished=finished,
        task_id=task_id,
        clock=clock,
        rng=rng,
    )


def _attempt_record(
    *,
    delivery: WebhookDelivery,
    token: str,
    result: network.SendResult,
    started: datetime,
    finished: datetime,
    task_id: str,
    clock: Clock | None,
    rng: random.Random | None,
) -> WebhookDeliveryAttempt:
    endpoint = delivery.endpoint
    next_at: datetime | None = None
    countdown: float | None = None
    common = {
        "attempts_count": F("attempts_count") + 1,
        "last_attempt_at": started,
        "last_status_code": result.status_code or None,
        "last_error": result.error,
    }
    with transaction.atomic():
        if result.ok:
            # Success counts whoever holds the claim: the receiver has the event.
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                state=SUCCEEDED,
                next_attempt_at=None,
                succeeded_at=finished,
                claim_token="",
                dispatched_for=None,
                next_trigger=WebhookDelivery.Trigger.SCHEDULED,
                **common,
            )
            if endpoint.failing_since is not None:
                WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        else:
            retry_count = delivery.retry_count + 1
            delay = retry_delay(retry_count=retry_count, rng=rng)
            if delay is not None and result.status_code in (429, 503):
                wanted = parse_retry_after(result.retry_after, now=finished)
                if wanted is not None and wanted > delay:
                    delay = wanted
            if delay is not None:
                next_at = finished + delay
                if delay.total_seconds() <= float(webhooks_settings.COUNTDOWN_MAX_SECONDS):
                    countdown = delay.total_seconds()
            owned = WebhookDelivery.objects.filter(pk=delivery.pk, state=PENDING, claim_token=token).update(
                state=PENDING if next_at else FAILED,
                retry_count=retry_count,
                next_attempt_at=next_at,
                dispatched_for=next_at if countdown is not None else None,
                claim_token="",
                next_trigger=WebhookDelivery.Trigger.SCHEDULED,
                **common,
            )
            if not owned:
                # Re-armed by a redeliver (or taken over after a lease ran out) while
                # we were sending: record the attempt, leave the schedule to the new owner.
                WebhookDelivery.objects.filter(pk=delivery.pk).update(**common)
                next_at = countdown = None
        attempt = WebhookDeliveryAttempt.objects.create(
            delivery=delivery,
            trigger=delivery.next_trigger,
            url=endpoint.url,
            status_code=result.status_code,
            error=result.error,
            error_message=result.error_message[:500],
            latency_ms=result.latency_ms,
            response_body=result.body.decode("utf-8", errors="replace"),
            response_truncated=result.truncated,
            location=result.location,
            next_attempt_at=next_at,
            task_id=task_id or "",
            created_at=started,
        )
        if not result.ok:
            _endpoint_failure(endpoint=endpoint, result=result, finished=finished, clock=clock)
        if countdown is not None:
            _dispatch_on_commit([delivery.pk], countdown=countdown)
    metrics.webhook_attempt_observe(
        outcome="success" if result.ok else (result.error or "error"), seconds=result.latency_ms / 1000
    )
    if result.ok:
        metrics.webhook_delivery_finished(
            outcome="succeeded", delay_seconds=(finished - delivery.event.created_at).total_seconds()
        )
    elif next_at is None and owned:
        metrics.webhook_delivery_finished(outcome="failed")
    return attempt


def _endpoint_failure(
    *, endpoint: WebhookEndpoint, result: network.SendResult, finished: datetime, clock: Clock | None
) -> None:
    failing_since = endpoint.failing_since
    if failing_since is None:
        WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=finished)
        failing_since = finished
    if result.status_code == 410:
        webhook_endpoint_disable(endpoint=endpoint, reason=WebhookEndpoint.DisabledReason.GONE, clock=clock)
        return
    window = timedelta(seconds=int(webhooks_settings.DISABLE_AFTER_FAILING_FOR))
    if finished - failing_since >= window:
        webhook_endpoint_disable(endpoint=endpoint, reason=WebhookEndpoint.DisabledReason.FAILING, clock=clock)


# --- Sweeping and retention -----------------------------------------------------------


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
    now = _now(clock)
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
            _dispatch_on_commit(delivery_ids)
    if delivery_ids:
        logger.info("Webhook sweeper queued %s due deliveries", len(delivery_ids))
    return len(delivery_ids)


def webhook_events_cleanup(*, clock: Clock | None = None, batch_size: int = 500) -> int:
    """Delete events older than ``EVENT_RETENTION_DAYS`` (30) with their deliveries and
    attempts, in batches; events still being delivered to an enabled endpoint stay."""
    cutoff = _now(clock) - timedelta(days=int(webhooks_settings.EVENT_RETENTION_DAYS))
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
