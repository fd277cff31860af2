"""Chat sessions and their messages.

A session (``chat_…``) belongs to one account and one model. Each turn adds
the client's new messages and one assistant message; the assistant message's
public id (``msg_…``) is also the turn's id: it is the ``id`` of the
``chat.completion`` and the reference of the turn's credit hold.

Message status follows the turn (the client's messages of a turn share its
assistant message's status): ``in_progress`` while the model answers,
then ``completed`` (saved and charged), ``incomplete`` (stopped early, saved
as produced and charged for what was produced) or ``failed`` (released in
full; the turn's messages leave the session's history).
"""

from __future__ import annotations

from django.db import models

from rivya_api.ids import PublicIdField
from rivya_core.conf import account_model_label

__all__ = ["ChatMessage", "ChatSession"]


class ChatSession(models.Model):
    class Source(models.TextChoices):
        API = "api", "API"
        STUDIO = "studio", "Studio"

    public_id = PublicIdField(prefix="chat")
    account = models.ForeignKey(account_model_label(), on_delete=models.PROTECT, related_name="chat_sessions")
    model = models.CharField(max_length=100, help_text="Public id of the catalog model.")
    title = models.CharField(max_length=200, blank=True)
    # Only sessions created through the API can be continued through it; the
    # platform's Studio keeps its own sessions in the same table.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    message_count = models.PositiveIntegerField(default=0)
    credits_spent = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"], name="rivya_chat_session_acct_idx")]

    def __str__(self) -> str:
        return self.public_id


class ChatMessage(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system", "system"
        DEVELOPER = "developer", "developer"
        USER = "user", "user"
        ASSISTANT = "assistant", "assistant"

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"
        INCOMPLETE = "incomplete", "incomplete"
        FAILED = "failed", "failed"

    public_id = PublicIdField(prefix="msg")
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    # Files API ids of the images attached to this message, in order.
    attachments = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETED)
    # The assistant message that answers this message's turn (itself for the assistant message).
    turn_id = models.CharField(max_length=40, db_index=True)
    # Assistant messages only: the outcome and the money.
    finish_reason = models.CharField(max_length=20, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    credits_reserved = models.PositiveBigIntegerField(null=True, blank=True)
    credits_charged = models.PositiveBigIntegerField(null=True, blank=True)
    # Failed turns: the error code the client was given.
    error_code = models.CharField(max_length=50, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Streamed turns sent with an Idempotency-Key: a retry while the turn runs is attached to it.
    idempotency_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["session", "created_at"], name="rivya_chat_message_sess_idx")]

    def __str__(self) -> str:
        return self.public_id
