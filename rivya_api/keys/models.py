"""API keys and their audit trail.

A key's secret is ``rvya_sk_`` plus 32 random bytes, URL-safe base64. It is
shown once, at creation; the database keeps only its SHA-256 (``key_hash``),
which is what a request is looked up by, plus ``prefix`` and ``last4`` so a
human can tell keys apart. A fast unsalted hash is right here: the secret has
256 bits of entropy, so there is nothing to brute-force, and a deterministic
hash lets one indexed lookup find the key (no SECRET_KEY involved, so rotating
Django's SECRET_KEY never invalidates API keys).

Keys are never deleted: revoking sets ``revoked_at`` and rolling sets the old
key's ``expires_at`` and ``replaced_by``; every change writes an
``APIKeyEvent`` (who, when, what, from which IP). A rolled key that still
works is ``rolling`` until its ``expires_at``, never ``active``: it has a
replacement and an end, and a page that called it active would hide both.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from rivya_api.ids import PublicIdField
from rivya_api.keys.scopes import default_scopes
from rivya_core.conf import account_model_label

__all__ = ["APIKey", "APIKeyEvent"]


class APIKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ROLLING = "rolling", "Rolling"  # replaced, still working until expires_at
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    public_id = PublicIdField(prefix="key")
    account = models.ForeignKey(account_model_label(), on_delete=models.PROTECT, related_name="rivya_api_keys")
    name = models.CharField(max_length=100, blank=True)
    # What is shown of the secret: "rvya_sk_AbCd" … "wxyz". The rest is never stored.
    prefix = models.CharField(max_length=16)
    last4 = models.CharField(max_length=4)
    # Hex SHA-256 of the whole secret; unique, so a request costs one indexed lookup.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set on the old key when it is rolled: the key that replaces it.
    replaced_by = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="replaces")
    # What the key may do (rivya_api.keys.scopes.SCOPES); the default is every scope but keys:*.
    scopes = models.JSONField(default=default_scopes, blank=True)
    # The model ids the key may use; null: every model.
    allowed_models = models.JSONField(null=True, blank=True, default=None)
    # The rivya_billing SpendLimit its reservations count against (its id; billing's rows are reached
    # through billing's services only); null: no credit limit. A rolled key's replacement shares it.
    spend_limit_id = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        indexes = [models.Index(fields=["account", "-created_at"], name="rivya_apikey_account_created")]

    def __str__(self) -> str:
        return f"{self.name or self.public_id} ({self.masked})"

    @property
    def masked(self) -> str:
        """How the key is shown after creation: ``rvya_sk_AbCd…wxyz``."""
        return f"{self.prefix}…{self.last4}"

    def status_at(self, now: datetime) -> str:
        """``revoked``, ``expired``, ``rolling`` (replaced, works until ``expires_at``) or ``active``."""
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return self.Status.EXPIRED
        if self.replaced_by_id is not None:
            return self.Status.ROLLING
        return self.Status.ACTIVE

    @property
    def works(self) -> bool:
        """Whether requests with this key are accepted now (``active`` or ``rolling``)."""
        return self.status in (self.Status.ACTIVE, self.Status.ROLLING)

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())


class APIKeyEvent(models.Model):
    """One audited change of a key: who did what, when, and from which address."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        ROLLED = "rolled", "Rolled"
        REVOKED = "revoked", "Revoked"

    api_key = models.ForeignKey(APIKey, on_delete=models.PROTECT, related_name="events")
    account = models.ForeignKey(account_model_label(), on_delete=models.PROTECT, related_name="rivya_api_key_events")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Where the change came from when there is no user, or to qualify one: "admin", "command", "settings".
    source = models.CharField(max_length=32, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Action details without secrets: the replacement's public id, the grace period, …
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "API key event"
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.action} {self.api_key.public_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"
