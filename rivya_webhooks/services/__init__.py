"""Business operations of rivya_webhooks, one module per concern: ``endpoints``,
``publishing`` (the outbox), ``delivery`` (one attempt), ``delivery_batch`` (a batch
message) and ``sweeping`` (re-queueing, retention).
The public names are re-exported here; import them from ``rivya_webhooks.services``.

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

from rivya_webhooks.services._common import Clock, iso
from rivya_webhooks.services.delivery import webhook_delivery_attempt
from rivya_webhooks.services.delivery_batch import webhook_deliveries_attempt
from rivya_webhooks.services.endpoints import (
    MAX_DESCRIPTION,
    event_types_validate,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_disable,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_test,
    webhook_endpoint_update,
)
from rivya_webhooks.services.publishing import webhook_event_publish, webhook_event_redeliver
from rivya_webhooks.services.sweeping import webhook_deliveries_sweep, webhook_events_cleanup

__all__ = [
    "MAX_DESCRIPTION",
    "Clock",
    "event_types_validate",
    "iso",
    "webhook_deliveries_sweep",
    "webhook_delivery_attempt",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_disable",
    "webhook_endpoint_rotate_secret",
    "webhook_endpoint_test",
    "webhook_endpoint_update",
    "webhook_event_publish",
    "webhook_event_redeliver",
    "webhook_deliveries_attempt",
    "webhook_events_cleanup",
]
