"""Spend limits: caps on what holds counted against them may reserve in a window."""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import models
from django.db.models import Q
from django.utils import timezone

from rivya_billing.models.wallets import new_limit_id


class SpendWindow(models.TextChoices):
    TOTAL = "total", "total"
    DAY = "day", "day (UTC)"
    MONTH = "month", "month (UTC)"


# The start of the "total" window: it never resets.
TOTAL_WINDOW_START = datetime(1970, 1, 1, tzinfo=UTC)


class SpendLimit(models.Model):
    """A cap on what the holds counted against it may reserve within a window (UTC).

    Billing knows nothing about who is limited: ``owner_ref`` is opaque (the API
    uses ``api_key:<key id>``). ``used`` is what the limit's holds reserved in the
    window starting at ``window_start``: a pending hold counts in full, a settled
    one with what it charged, a released or expired one not at all. A reservation
    checks and raises ``used`` in the same statement that reserves from the wallet
    (``rivya_billing.services.holds``), so no burst can reserve past ``credits``.
    A reservation in a later window starts it afresh (``used`` from 0). Lowering
    ``credits`` below ``used`` refuses new reservations until the window resets.
    """

    public_id = models.CharField(max_length=40, default=new_limit_id, editable=False, unique=True)
    owner_ref = models.CharField(max_length=200, unique=True, help_text="Who is limited (opaque to billing).")
    credits = models.BigIntegerField(help_text="The most the limit's holds may reserve in one window.")
    window = models.CharField(max_length=8, choices=SpendWindow.choices, default=SpendWindow.TOTAL)
    used = models.BigIntegerField(default=0, help_text="Reserved or charged in the current window.")
    window_start = models.DateTimeField(
        default=TOTAL_WINDOW_START, help_text="Start of the window ``used`` counts (UTC)."
    )
    # The window in which reaching the limit was last announced: once per window.
    reached_window_start = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(credits__gte=0), name="rivya_billing_spendlimit_credits_gte_0"),
            models.CheckConstraint(condition=Q(used__gte=0), name="rivya_billing_spendlimit_used_gte_0"),
            models.CheckConstraint(
                condition=Q(window__in=["total", "day", "month"]), name="rivya_billing_spendlimit_window_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.owner_ref}: {self.credits} per {self.window})"
