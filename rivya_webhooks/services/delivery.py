"""One delivery attempt: claim, send outside any transaction, record the outcome in one."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from rivya_webhooks import metrics, network
from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.exceptions import InvalidWebhookURLError
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint, WebhookEvent
from rivya_webhooks.schedule import parse_retry_after, retry_delay
from rivya_webhooks.services import single_statement
from rivya_webhooks.services._common import FAILED, PENDING, SUCCEEDED, Clock, now_from
from rivya_webhooks.services.endpoints import webhook_endpoint_disable
from rivya_webhooks.services.publishing import dispatch_on_commit
from rivya_webhooks.signing import signed_headers


def _client_for(resolver: network.Resolver | None, policy: network.NetworkPolicy) -> tuple[Any, bool]:
    """The process's shared keep-alive client, or a private one for an injected resolver."""
    if resolver is None:
        return network.shared_client(resolver=webhooks_settings.RESOLVER, policy=policy), False
    return network.client_build(resolver=resolver, policy=policy), True


def _send(
    *,
    endpoint: WebhookEndpoint,
    event: WebhookEvent,
    now: datetime,
    resolver: network.Resolver | None,
    secrets: list[str] | None = None,
) -> network.SendResult:
    """Sign and POST the event once; ``secrets``: the endpoint's signing secrets at ``now``, if known."""
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
        secrets=secrets if secrets is not None else endpoint.signing_secrets(now),
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
    now = now_from(clock)
    token = uuid.uuid4().hex
    lease_until = now + timedelta(seconds=2 * float(webhooks_settings.TIMEOUT) + 60)
    claim = single_statement.claim_and_load if single_statement.one_statement_available() else _claim_and_load
    delivery = claim(delivery_id=delivery_id, now=now, lease_until=lease_until, token=token)
    if delivery is None:
        return None
    endpoint, event = delivery.endpoint, delivery.event
    _release_pooled_connection()
    result = _send(endpoint=endpoint, event=event, now=now, resolver=resolver)
    finished = now_from(clock)
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


def _claim_and_load(*, delivery_id: int, now: datetime, lease_until: datetime, token: str) -> WebhookDelivery | None:
    """The plain claim: read the delivery, then a conditional UPDATE moves its due time to ``lease_until``."""
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
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, state=PENDING, next_attempt_at=delivery.next_attempt_at
    ).update(next_attempt_at=lease_until, claim_token=token, dispatched_for=None)
    return delivery if claimed else None


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
    """One transaction: the delivery's next state, the attempt row, the endpoint's failure clock."""
    endpoint = delivery.endpoint
    common = {
        "attempts_count": F("attempts_count") + 1,
        "last_attempt_at": started,
        "last_status_code": result.status_code or None,
        "last_error": result.error,
    }
    if result.ok and _success_in_one_statement(delivery=delivery):
        attempt = _attempt_row(
            delivery=delivery, result=result, started=started, next_at=None, task_id=task_id, save=False
        )
        attempt = single_statement.record_success(
            delivery=delivery, attempt=attempt, values=_success_values(finished, common)
        )
        _attempt_observe(delivery=delivery, result=result, finished=finished, gave_up=False)
        return attempt
    with transaction.atomic():
        if result.ok:
            _record_success(delivery=delivery, finished=finished, common=common)
            next_at, countdown, owned = None, None, True
        else:
            next_at, countdown, owned = _record_failure(
                delivery=delivery, token=token, result=result, finished=finished, common=common, rng=rng
            )
        attempt = _attempt_row(delivery=delivery, result=result, started=started, next_at=next_at, task_id=task_id)
        if not result.ok:
            _endpoint_failure(endpoint=endpoint, result=result, finished=finished, clock=clock)
        if countdown is not None:
            dispatch_on_commit([delivery.pk], countdown=countdown)
    _attempt_observe(delivery=delivery, result=result, finished=finished, gave_up=next_at is None and owned)
    return attempt


def _success_values(finished: datetime, common: dict[str, Any]) -> dict[str, Any]:
    # Success counts whoever holds the claim: the receiver has the event.
    return {
        "state": SUCCEEDED,
        "next_attempt_at": None,
        "succeeded_at": finished,
        "claim_token": "",
        "dispatched_for": None,
        "next_trigger": WebhookDelivery.Trigger.SCHEDULED,
        **common,
    }


def _record_success(*, delivery: WebhookDelivery, finished: datetime, common: dict[str, Any]) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**_success_values(finished, common))
    if delivery.endpoint.failing_since is not None:
        WebhookEndpoint.objects.filter(pk=delivery.endpoint.pk).update(failing_since=None)


def _retry_delay(
    *, retry_count: int, result: network.SendResult, finished: datetime, rng: random.Random | None
) -> timedelta | None:
    """The wait before the next try (None when the schedule is used up); at least Retry-After on 429/503."""
    delay = retry_delay(retry_count=retry_count, rng=rng)
    if delay is not None and result.status_code in (429, 503):
        wanted = parse_retry_after(result.retry_after, now=finished)
        if wanted is not None and wanted > delay:
            delay = wanted
    return delay


def _record_failure(
    *,
    delivery: WebhookDelivery,
    token: str,
    result: network.SendResult,
    finished: datetime,
    common: dict[str, Any],
    rng: random.Random | None,
) -> tuple[datetime | None, float | None, bool]:
    """Schedule the next try or fail the delivery; returns (next attempt, countdown, still owned)."""
    retry_count = delivery.retry_count + 1
    delay = _retry_delay(retry_count=retry_count, result=result, finished=finished, rng=rng)
    next_at = finished + delay if delay is not None else None
    countdown = None
    if delay is not None and delay.total_seconds() <= float(webhooks_settings.COUNTDOWN_MAX_SECONDS):
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
        return None, None, False
    return next_at, countdown, True


def _attempt_row(
    *,
    delivery: WebhookDelivery,
    result: network.SendResult,
    started: datetime,
    next_at: datetime | None,
    task_id: str,
    save: bool = True,
) -> WebhookDeliveryAttempt:
    attempt = WebhookDeliveryAttempt(
        delivery=delivery,
        trigger=delivery.next_trigger,
        url=delivery.endpoint.url,
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
    if save:
        attempt.save(force_insert=True)
    return attempt


def _success_in_one_statement(*, delivery: WebhookDelivery) -> bool:
    """Whether a success can be recorded by ``single_statement.record_success``: on PostgreSQL,
    when the endpoint's failure clock needs no reset (the common case)."""
    return single_statement.one_statement_available() and delivery.endpoint.failing_since is None


def _attempt_observe(
    *, delivery: WebhookDelivery, result: network.SendResult, finished: datetime, gave_up: bool
) -> None:
    metrics.webhook_attempt_observe(
        outcome="success" if result.ok else (result.error or "error"), seconds=result.latency_ms / 1000
    )
    if result.ok:
        metrics.webhook_delivery_finished(
            outcome="succeeded", delay_seconds=(finished - delivery.event.created_at).total_seconds()
        )
    elif gave_up:
        metrics.webhook_delivery_finished(outcome="failed")


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
