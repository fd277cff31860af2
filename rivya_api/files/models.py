"""A stored file: its bytes live in Django's storage, this row describes them.

The row outlives the bytes: deleting a file (or its expiry) removes the bytes
and sets ``deleted_at``; the record stays so ids in old tasks and messages
still resolve to ``deleted: true`` instead of a 404.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from rivya_api.ids import PublicIdField
from rivya_core.conf import account_model_label

__all__ = ["File"]


class File(models.Model):
    class Purpose(models.TextChoices):
        REFERENCE = "reference", "Reference media"
        CHAT_ATTACHMENT = "chat_attachment", "Chat attachment"
        GENERATION_OUTPUT = "generation_output", "Generation output"

    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        AUDIO = "audio", "Audio"
        VIDEO = "video", "Video"

    public_id = PublicIdField(prefix="file")
    account = models.ForeignKey(account_model_label(), on_delete=models.PROTECT, related_name="+")
    purpose = models.CharField(max_length=32, choices=Purpose.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=64)
    size = models.BigIntegerField(help_text="Bytes.")
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    # Name in the storage; emptied once the bytes are removed.
    storage_name = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "file"
        indexes = [
            models.Index(fields=["account", "created_at"], name="rivya_file_account_created"),
            # The expiry sweep reads only live files.
            models.Index(fields=["expires_at"], condition=Q(deleted_at__isnull=True), name="rivya_file_live_expiry"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(size__gte=0), name="rivya_file_size_non_negative"),
        ]

    def __str__(self) -> str:
        return self.public_id

    def is_deleted(self, now=None) -> bool:  # type: ignore[no-untyped-def]
        """Deleted, or past its expiry (the sweep may not have run yet)."""
        return self.deleted_at is not None or self.expires_at <= (now or timezone.now())
