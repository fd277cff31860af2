"""Holds: reservations of credits for one piece of work, resolved exactly once."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from rivya_billing.models.wallets import Wallet, new_hold_id


class HoldState(models.TextChoices):
    PENDING = "pending", "pending"
    SETTLED = "settled", "settled"
    RELEASED = "released", "released"
    EXPIRED = "expired", "expired"


class Hold(models.Model):
    """A reservation of credits for one piece of work, resolved exactly once.

    ``lease_expires_at`` is the lease: the sweeper expires a pending hold whose
    lease lapsed, and a settle or renewal after that is refused as stale.
    ``lease_token`` is the fencing counter: each claim of the hold by a worker
    increments it, so a superseded worker's calls can be told apart.
    """

    public_id = models.CharField(max_length=40, default=new_hold_id, editable=False)
    # Indexed by the (wallet, reference) unique constraint; a second index would only slow inserts.
    # No database FK constraint: see ``WALLET_REFERENCE_NOTE``.
    wallet = models.ForeignKey(
        Wallet, on_delete=models.PROTECT, related_name="holds", db_index=False, db_constraint=False
    )
    reference = models.CharField(max_length=255, help_text="What the hold is for: a task id, a chat message id …")
    amount = models.BigIntegerField(help_text="Credits held.")
    state = models.CharField(max_length=10, choices=HoldState.choices, default=HoldState.PENDING)
    usage = models.BigIntegerField(null=True, blank=True, help_text="Usage reported at settle time.")
    captured = models.BigIntegerField(default=0, help_text="Charged from the hold at settle time.")
    overrun = models.BigIntegerField(default=0, help_text="Charged above the hold (OVERRUN_POLICY 'available').")
    waived = models.BigIntegerField(default=0, help_text="Usage above the hold that was not charged.")
    refunded = models.BigIntegerField(default=0, help_text="Refunded of what was charged.")
    lease_expires_at = models.DateTimeField()
    lease_token = models.PositiveIntegerField(default=0)
    actor = models.CharField(max_length=200, blank=True, help_text="Key or user that reserved (opaque).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The spend limit the hold was counted against, and the window it was counted in: releasing
    # (or settling below the hold) gives the uncharged part back to that window only.
    spend_limit = models.ForeignKey(
        "SpendLimit", on_delete=models.PROTECT, null=True, blank=True, related_name="holds", db_constraint=False
    )
    spend_window_start = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A UniqueConstraint rather than unique=True: same guarantee without PostgreSQL's extra
            # ``varchar_pattern_ops`` index, which the reserve path would maintain for nothing.
            models.UniqueConstraint(fields=["public_id"], name="rivya_billing_hold_unique_public_id"),
            models.UniqueConstraint(fields=["wallet", "reference"], name="rivya_billing_hold_unique_reference"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="rivya_billing_hold_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(captured__gte=0, captured__lte=F("amount"), overrun__gte=0, waived__gte=0),
                name="rivya_billing_hold_charges_in_range",
            ),
            models.CheckConstraint(
                condition=Q(refunded__gte=0, refunded__lte=F("captured") + F("overrun")),
                name="rivya_billing_hold_refund_lte_charge",
            ),
            models.CheckConstraint(
                condition=Q(state="settled", usage__isnull=False, resolved_at__isnull=False)
                | Q(
                    state__in=["pending", "released", "expired"],
                    usage__isnull=True,
                    captured=0,
                    overrun=0,
                    waived=0,
                    refunded=0,
                )
                & (
                    Q(state="pending", resolved_at__isnull=True)
                    | Q(state__in=["released", "expired"], resolved_at__isnull=False)
                ),
                name="rivya_billing_hold_state_fields",
            ),
        ]
        indexes = [
            # The sweeper's query: pending holds by lease expiry.
            models.Index(fields=["lease_expires_at"], condition=Q(state="pending"), name="rivya_hold_pending_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.state}, {self.amount})"

    @property
    def charged(self) -> int:
        """Credits this hold took from the balance (before refunds)."""
        return self.captured + self.overrun

    @property
    def released(self) -> int:
        """Credits of the hold returned to ``available`` without being charged."""
        return self.amount - self.captured if self.state != HoldState.PENDING else 0
