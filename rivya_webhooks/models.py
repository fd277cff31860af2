"""Models of rivya_webhooks: endpoints, the event outbox, deliveries and their attempts.

    WebhookEndpoint 1─* WebhookDelivery *─1 WebhookEvent
                              1
                              *
                    WebhookDeliveryAttempt

An event is written once, in the publisher's transaction, with its envelope as
the exact bytes every endpoint receives (and the event log returns). A delivery
is the outbox row for one (event, endpoint): its ``next_attempt_at`` is the
only schedule there is, so a broker that loses messages delays work but never
loses it (the sweeper queues what is due). Attempts are append-only history.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q

from rivya_core.conf import account_model_label
from rivya_webhooks import ids
from rivya_webhooks.crypto import secret_decrypt


class WebhookEndpoint(models.Model):
    """A URL of an account that receives signed events of the types it subscribes to."""

    class DisabledReason(models.TextChoices):
        NONE = "", "Enabled"
        MANUAL = "manual", "Disabled by the account"
        GONE = "gone", "The endpoint answered 410 Gone"
        FAILING = "failing", "Deliveries failed for too long"

    public_id = models.CharField(max_length=40, unique=True, default=ids.endpoint_id, editable=False)
    account = models.ForeignKey(account_model_label(), on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=500, blank=True, default="")
    # Registered type names, or ["*"] for every type.
    event_types = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=16, choices=DisabledReason.choices, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Fernet tokens (rivya_webhooks.crypto), never the plain secret.
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # First failure since the last success; drives the "failing for 5 days" rule.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"], name="rivya_wh_endpoint_account")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.url}"

    def subscribes_to(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets every request is signed with right now: the current one, plus the
        previous one until its overlap after a rotation ends."""
        result = [secret_decrypt(self.secret_encrypted)]
        if self.previous_secret_encrypted and self.previous_secret_expires_at and now < self.previous_secret_expires_at:
            result.append(secret_decrypt(self.previous_secret_encrypted))
        return result


class WebhookEvent(models.Model):
    """One event of an account, as pushed and as pulled: ``payload`` is the exact envelope."""

    public_id = models.CharField(max_length=40, unique=True, default=ids.event_id, editable=False)
    account = models.ForeignKey(account_model_label(), on_delete=models.PROTECT, related_name="webhook_events")
    type = models.CharField(max_length=100)
    data = models.JSONField(default=dict)
    # The envelope {id, type, created_at, data} as compact UTF-8 JSON: the signed body.
    payload = models.TextField(editable=False)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["account", "-created_at"], name="rivya_wh_event_account"),
            models.Index(fields=["account", "type", "-created_at"], name="rivya_wh_event_account_type"),
            models.Index(fields=["created_at"], name="rivya_wh_event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.payload)


class WebhookDelivery(models.Model):
    """The outbox row of one event for one endpoint.

    ``pending`` rows are sent when ``next_attempt_at`` has passed (and their
    endpoint is enabled: a disabled endpoint's deliveries wait, and resume when
    it is enabled again). A worker claims a row by moving ``next_attempt_at``
    forward by a lease, so two workers never send the same due attempt, and a
    worker that dies mid-request leaves a row that becomes due again.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        MANUAL = "manual", "Manual"

    public_id = models.CharField(max_length=40, unique=True, default=ids.delivery_id, editable=False)
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    # Failed attempts since the delivery was (re)armed: the position in the retry schedule.
    retry_count = models.PositiveIntegerField(default=0)
    attempts_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The trigger the next attempt is recorded with (a redeliver makes it manual).
    next_trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULED)
    # The due time a broker message was last queued for; the sweeper re-queues a due row
    # only when this is empty or older than REDISPATCH_AFTER (the message was lost).
    dispatched_for = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, default="")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=32, blank=True, default="")
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="rivya_wh_delivery_event_endpoint"),
            models.CheckConstraint(
                condition=~Q(state="pending") | Q(next_attempt_at__isnull=False),
                name="rivya_wh_delivery_pending_has_due_time",
            ),
        ]
        indexes = [
            # The sweeper's scan: only pending rows, in due order.
            models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="rivya_wh_delivery_due"),
            models.Index(fields=["endpoint", "state"], name="rivya_wh_delivery_endpoint"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.public_id} ({self.state})"


class WebhookDeliveryAttempt(models.Model):
    """One HTTP request of a delivery and what came back (append-only)."""

    class Error(models.TextChoices):
        NONE = "", "None"
        HTTP_STATUS = "http_status", "Non-2xx status"
        REDIRECT = "redirect", "Redirect (not followed)"
        TIMEOUT = "timeout", "Timed out"
        CONNECT = "connect", "Could not connect"
        TLS = "tls", "TLS error"
        DNS = "dns", "Host did not resolve"
        BLOCKED_DESTINATION = "blocked_destination", "Destination not allowed"
        INVALID_URL = "invalid_url", "Invalid URL"
        NETWORK = "network", "Network or protocol error"

    public_id = models.CharField(max_length=40, unique=True, default=ids.attempt_id, editable=False)
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts")
    trigger = models.CharField(max_length=16, choices=WebhookDelivery.Trigger.choices)
    # The URL the request went to (the endpoint's URL may change later).
    url = models.URLField(max_length=2048)
    # 0 when no HTTP response came back.
    status_code = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=32, choices=Error.choices, blank=True, default="")
    error_message = models.CharField(max_length=500, blank=True, default="")
    latency_ms = models.PositiveIntegerField(default=0)
    response_body = models.TextField(blank=True, default="")
    response_truncated = models.BooleanField(default=False)
    # Where a 3xx pointed (never followed).
    location = models.CharField(max_length=2048, blank=True, default="")
    # The next attempt this result scheduled, if any.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["delivery", "created_at"], name="rivya_wh_attempt_delivery")]

    def __str__(self) -> str:
        return f"{self.public_id} {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return not self.error and 200 <= self.status_code < 300
