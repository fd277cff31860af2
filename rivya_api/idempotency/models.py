"""The record of one idempotency key: its claim while running, its response once done.

One row per (account, key), guarded by a unique constraint: inserting the row
*is* the claim, so many web processes agree on who runs a request without any
per-process lock. ``lease_token`` is a compare-and-swap ticket: every claim or
takeover writes a fresh one, and completing, releasing or renewing only touches
the row while it still carries the caller's token, so a process whose lease was
taken over can never overwrite the new owner's result.
"""

from __future__ import annotations

import uuid

from django.db import models

from rivya_core.conf import account_model_label

__all__ = ["IdempotencyRecord"]


class IdempotencyRecord(models.Model):
    class State(models.TextChoices):
        IN_FLIGHT = "in_flight", "In flight"
        COMPLETED = "completed", "Completed"

    # CASCADE, not the house PROTECT: a record is a 24-hour cache of a response
    # with no audit value, and must not keep an account from being deleted.
    # No separate index: the unique (account, key) index leads with account.
    account = models.ForeignKey(account_model_label(), on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    # sha256 hex of method, path, query and body (see rivya_api.idempotency.http).
    fingerprint = models.CharField(max_length=64)
    request_method = models.CharField(max_length=10, blank=True, default="")
    request_path = models.CharField(max_length=2048, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_FLIGHT)
    lease_token = models.UUIDField(default=uuid.uuid4)
    # While IN_FLIGHT: the claim is valid until then; after it, a retry may take it
    # over (the process that claimed it is presumed dead). Null once completed.
    locked_until = models.DateTimeField(null=True, blank=True)
    # Optional public id of what the running request created (``task_…``, a chat
    # turn's ``msg_…``), set by its owner so a retry that finds it in flight can
    # point at (or attach to) the live work instead of only answering 409.
    reference = models.CharField(max_length=64, blank=True, default="")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.BinaryField(default=b"", blank=True)
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = "idempotency record"
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="rivya_idempotency_account_key_uniq"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="rivya_idem_expires_idx")]

    def __str__(self) -> str:
        return f"{self.request_method} {self.request_path} [{self.key}] {self.state}"
