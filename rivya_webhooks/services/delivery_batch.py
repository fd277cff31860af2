"""A batch message's deliveries: one claim and one success record for the batch on PostgreSQL.

``publishing`` queues the deliveries one transaction published to one endpoint as one
message (``rivya_webhooks.deliver_batch``, up to ``BATCH_SIZE``). Sent one attempt at a
time (``webhook_delivery_attempt``), each costs a claim and a record of its own. Here,
where ``single_statement.many_available()``, the batch is claimed in one statement, sent
in turn, and its successes are recorded in one statement; any other outcome goes through
the plain record (``delivery._attempt_record``), as a single attempt's would.

What stays as it is without batching:

* A slow or failing endpoint holds a worker for one attempt per message: after the first
  attempt that does not succeed, the rest of the batch is handed back (due now, claim
  cleared) and queued one message each. So is the rest of a batch still unsent once
  ``TIMEOUT`` seconds have passed since its claim, so that no attempt starts with less of
  the lease left than ``TIMEOUT`` + 60 s.
* Successes are recorded, when one more succeeds, once the oldest unrecorded one is
  ``RECORD_EVERY`` seconds old, and before any other outcome. A worker that dies mid-batch
  re-sends (same ``webhook-id``) the successes not yet recorded: at most a batch's, up to
  ``RECORD_EVERY`` + ``TIMEOUT`` seconds old (a send in progress holds the record back). What
  it claimed and did not send is due again when the lease runs out, and the sweeper queues it.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta

from rivya_webhooks import network
from rivya_webhooks.conf import webhooks_settings
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt
from rivya_webhooks.services import single_statement
from rivya_webhooks.services._common import PENDING, Clock, now_from
from rivya_webhooks.services.delivery import (
    _attempt_observe,
    _attempt_record,
    _attempt_row,
    _release_pooled_connection,
    _send,
    webhook_delivery_attempt,
)
from rivya_webhooks.services.publishing import dispatch_on_commit

# Successes waiting to be recorded are written at least this often (seconds).
RECORD_EVERY = 1.0


def webhook_deliveries_attempt(
    *,
    delivery_ids: list[int],
    task_id: str = "",
    clock: Clock | None = None,
    resolver: network.Resolver | None = None,
    rng: random.Random | None = None,
) -> int:
    """``webhook_delivery_attempt`` for each of a batch of deliveries to one endpoint, in turn;
    returns how many attempts were made.

    After the first attempt that fails, the rest are queued one message each, as without
    batching, so a slow or failing endpoint holds a worker for one attempt per message.
    """
    if len(delivery_ids) > 1 and single_statement.many_available():
        return _attempt_claimed_batch(
            delivery_ids=delivery_ids, task_id=task_id, clock=clock, resolver=resolver, rng=rng
        )
    made = 0
    for index, delivery_id in enumerate(delivery_ids):
        attempt = webhook_delivery_attempt(
            delivery_id=delivery_id, task_id=task_id, clock=clock, resolver=resolver, rng=rng
        )
        if attempt is None:
            continue
        made += 1
        if attempt.error or not 200 <= attempt.status_code < 300:
            dispatch_on_commit(delivery_ids[index + 1 :])
            break
    return made


class _Successes(list[tuple[WebhookDeliveryAttempt, datetime, network.SendResult]]):
    """Successes sent and not yet recorded, with when the oldest of them was sent."""

    since = 0.0

    def add(self, attempt: WebhookDeliveryAttempt, finished: datetime, result: network.SendResult) -> None:
        if not self:
            self.since = time.monotonic()
        self.append((attempt, finished, result))

    def record(self, *, force: bool) -> None:
        if not self or not (force or time.monotonic() - self.since >= RECORD_EVERY):
            return
        single_statement.record_successes(successes=[(attempt, finished) for attempt, finished, _ in self])
        for attempt, finished, result in self:
            _attempt_observe(delivery=attempt.delivery, result=result, finished=finished, gave_up=False)
        self.clear()


def _attempt_claimed_batch(
    *,
    delivery_ids: list[int],
    task_id: str,
    clock: Clock | None,
    resolver: network.Resolver | None,
    rng: random.Random | None,
) -> int:
    now = now_from(clock)
    token = uuid.uuid4().hex
    timeout = float(webhooks_settings.TIMEOUT)
    lease_until = now + timedelta(seconds=2 * timeout + 60)
    deliveries = single_statement.claim_many(delivery_ids=delivery_ids, now=now, lease_until=lease_until, token=token)
    if not deliveries:
        return 0
    successes, secrets, made = _Successes(), {}, 0
    for index, delivery in enumerate(deliveries):
        started = now if index == 0 else now_from(clock)
        if started + timedelta(seconds=timeout + 60) > lease_until:
            successes.record(force=True)
            _hand_back(deliveries[index:], token=token, now=started)
            return made
        _release_pooled_connection()  # no pooled connection is held while a receiver answers
        endpoint = delivery.endpoint
        if endpoint.pk not in secrets:
            secrets[endpoint.pk] = endpoint.signing_secrets(now)
        result = _send(
            endpoint=endpoint, event=delivery.event, now=now, resolver=resolver, secrets=secrets[endpoint.pk]
        )
        finished, made = now_from(clock), made + 1
        if result.ok and endpoint.failing_since is None:
            attempt = _attempt_row(
                delivery=delivery, result=result, started=started, next_at=None, task_id=task_id, save=False
            )
            successes.add(attempt, finished, result)
            successes.record(force=False)
            continue
        successes.record(force=True)
        _attempt_record(
            delivery=delivery,
            token=token,
            result=result,
            started=started,
            finished=finished,
            task_id=task_id,
            clock=clock,
            rng=rng,
        )
        if not result.ok:
            _hand_back(deliveries[index + 1 :], token=token, now=finished)
            return made
        endpoint.failing_since = None  # the plain record cleared it: its next successes batch again
    successes.record(force=True)
    return made


def _hand_back(deliveries: list[WebhookDelivery], *, token: str, now: datetime) -> None:
    """Give up the claim on deliveries of the batch not sent (due now, as a queued message
    would find them) and queue them one message each."""
    delivery_ids = [delivery.pk for delivery in deliveries]
    if not delivery_ids:
        return
    WebhookDelivery.objects.filter(pk__in=delivery_ids, state=PENDING, claim_token=token).update(
        next_attempt_at=now, claim_token="", dispatched_for=now
    )
    dispatch_on_commit(delivery_ids)
