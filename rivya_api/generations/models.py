"""A generation task: one accepted job, its state, its money and its outputs.

State moves queued → running → succeeded | failed | canceled, and every move
happens in one transaction with the matching ledger operation and webhook
event (see ``services``), so the three never disagree.
"""

from __future__ import annotations

from django.db import models

from rivya_api.ids import PublicIdField
from rivya_core.conf import account_model_label

__all__ = ["GenerationTask"]


class GenerationTask(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

    public_id = PublicIdField(prefix="task")
    account = models.ForeignKey(account_model_label(), on_delete=models.PROTECT, related_name="+")
    # Who submitted it: an API key (public id) or a Studio user; kept as text so
    # deleting a key or user never touches the task or its ledger reference.
    submitted_by = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, default="api")
    model = models.CharField(max_length=100)
    kind = models.CharField(max_length=16)
    input = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # Credits: the price quoted and reserved at submission; charged on success,
    # released (the hold returned uncharged) on failure or cancel. Integers in the
    # wallet's unit. The column keeps its first name, ``refunded``; everything else
    # says ``released`` (DESIGN.md: a refund returns credits that were charged).
    price = models.PositiveIntegerField()
    charged = models.PositiveIntegerField(default=0)
    refunded = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # Set while a worker runs the task and renewed as it reports progress; a
    # lapsed heartbeat means the worker died and the sweeper takes over.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Last time the task was handed to the queue; the sweeper re-queues tasks
    # the broker lost (Redis here keeps nothing on disk).
    queued_at = models.DateTimeField()
    event_sequence = models.PositiveIntegerField(default=0)
    # When the task is overdue: the queue lease from acceptance, then its model's time limit plus
    # the heartbeat lease from the start of each run. The sweeper fails it past this, whatever it holds.
    deadline_at = models.DateTimeField(null=True, blank=True)
    # Sweeps that raised on this task, and when the sweeper may try it again (see generations.sweeps).
    sweep_failures = models.PositiveSmallIntegerField(default=0)
    sweep_retry_at = models.DateTimeField(null=True, blank=True)
    # The billing hold's lease token of the current run; a superseded run cannot settle.
    hold_token = models.PositiveIntegerField(null=True, blank=True)
    outputs = models.ManyToManyField("rivya_api.File", blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["account", "-created_at"], name="rivya_gen_account_recent"),
            models.Index(fields=["status", "queued_at"], name="rivya_gen_status_queued"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="rivya_gen_progress_le_100"),
            models.CheckConstraint(
                condition=models.Q(charged__lte=models.F("price")) & models.Q(refunded__lte=models.F("price")),
                name="rivya_gen_credits_within_price",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def released(self) -> int:
        """Credits returned uncharged when the task failed or was canceled (the ``refunded`` column)."""
        return self.refunded
