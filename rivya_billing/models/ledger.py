"""The append-only ledger: entry types, their effects, and the entries."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from rivya_billing.models.holds import Hold
from rivya_billing.models.wallets import Wallet, new_entry_id


class EntryType(models.TextChoices):
    GRANT = "grant", "grant"  # balance +amount
    RESERVE = "reserve", "reserve"  # held +amount
    SETTLE = "settle", "settle"  # balance -amount, held -amount (captured from a hold)
    RELEASE = "release", "release"  # held -amount (returned uncaptured)
    # With a hold: held -amount (the hold's lease lapsed). Without one: balance -amount (what was
    # left of an expiring grant at its expiry; reference = the grant's, see ``GRANT_EXPIRY_NOTE``).
    EXPIRE = "expire", "expire"
    OVERRUN = "overrun", "overrun"  # balance -amount (usage above the hold, charged from available)
    WAIVE = "waive", "waive"  # no effect: usage above the hold that was not charged
    REFUND = "refund", "refund"  # balance +amount (returns credits that were captured)
    ADJUST = "adjust", "adjust"  # balance ±amount (an admin correction)


# Types whose reference is the operation's own idempotency key, unique per wallet.
KEYED_TYPES = (EntryType.GRANT, EntryType.ADJUST, EntryType.REFUND)
# Types of which a hold has at most one line.
HOLD_LINE_TYPES = (
    EntryType.RESERVE,
    EntryType.SETTLE,
    EntryType.RELEASE,
    EntryType.EXPIRE,
    EntryType.OVERRUN,
    EntryType.WAIVE,
)

# Effect of each type on (balance, held), as multiples of ``amount``. ``adjust`` is ±1.
EFFECTS: dict[str, tuple[int, int]] = {
    EntryType.GRANT: (1, 0),
    EntryType.RESERVE: (0, 1),
    EntryType.SETTLE: (-1, -1),
    EntryType.RELEASE: (0, -1),
    EntryType.EXPIRE: (0, -1),
    EntryType.OVERRUN: (-1, 0),
    EntryType.WAIVE: (0, 0),
    EntryType.REFUND: (1, 0),
}
# The effect of an ``expire`` line without a hold: the unspent rest of an expiring grant leaves.
GRANT_EXPIRY_EFFECT: tuple[int, int] = (-1, 0)


def entry_effect(entry_type: str, *, has_hold: bool) -> tuple[int, int] | None:
    """(balance, held) multiples of ``amount`` for a non-adjust line; None for an unknown type."""
    if entry_type == EntryType.EXPIRE and not has_hold:
        return GRANT_EXPIRY_EFFECT
    return EFFECTS.get(entry_type)


def _effect_condition() -> Q:
    amount = F("amount")
    times = {1: amount, -1: -amount, 0: 0}
    by_type = [
        Q(type=entry_type, balance_delta=times[b], held_delta=times[h])
        # ``expire`` has two effects: a hold's lapsed lease (this one, with its hold) and a grant's expiry.
        & (Q(hold__isnull=False) if entry_type == EntryType.EXPIRE else Q())
        for entry_type, (b, h) in EFFECTS.items()
    ]
    b, h = GRANT_EXPIRY_EFFECT
    by_type.append(Q(type=EntryType.EXPIRE, hold__isnull=True, balance_delta=times[b], held_delta=times[h]))
    by_type.append(Q(type=EntryType.ADJUST, held_delta=0) & (Q(balance_delta=amount) | Q(balance_delta=-amount)))
    condition = by_type[0]
    for q in by_type[1:]:
        condition |= q
    return condition


class LedgerImmutableError(Exception):
    """Raised by the ORM on an attempt to change or delete a posted ledger entry."""


class LedgerEntryQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise LedgerImmutableError("Ledger entries are append-only; post a correcting entry instead.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise LedgerImmutableError("Ledger entries are append-only; post a correcting entry instead.")


class LedgerEntry(models.Model):
    """One change of a wallet, with the wallet's balance and held right after it.

    Append-only: corrections are new entries (``refund``, ``adjust``). Rows are
    written only by ``rivya_billing.services``, under the wallet's row lock, so
    ``sequence`` runs 1, 2, 3 … per wallet without gaps.
    """

    public_id = models.CharField(max_length=40, default=new_entry_id, editable=False)
    # Indexed by the (wallet, sequence) unique constraint. No database FK constraint: see
    # ``WALLET_REFERENCE_NOTE``.
    wallet = models.ForeignKey(
        Wallet, on_delete=models.PROTECT, related_name="entries", db_index=False, db_constraint=False
    )
    sequence = models.BigIntegerField()
    type = models.CharField(max_length=10, choices=EntryType.choices)
    amount = models.BigIntegerField(help_text="Size of the entry; its sign is in the deltas.")
    balance_delta = models.BigIntegerField()
    held_delta = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    held_after = models.BigIntegerField()
    reference = models.CharField(max_length=255)
    # Unindexed on purpose: holds are never deleted, and a hold's lines are found by reference.
    hold = models.ForeignKey(
        Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="entries", db_index=False
    )
    actor = models.CharField(max_length=200, blank=True, help_text="Key or user that caused the entry (opaque).")
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = LedgerEntryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="rivya_billing_entry_unique_public_id"),
            models.UniqueConstraint(fields=["wallet", "sequence"], name="rivya_billing_entry_unique_sequence"),
            models.UniqueConstraint(
                fields=["wallet", "type", "reference"],
                condition=Q(type__in=[t.value for t in KEYED_TYPES]),
                name="rivya_billing_entry_unique_keyed_reference",
            ),
            models.UniqueConstraint(
                fields=["hold", "type"],
                condition=Q(type__in=[t.value for t in HOLD_LINE_TYPES]),
                name="rivya_billing_entry_one_line_per_hold",
            ),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="rivya_billing_entry_sequence_gte_1"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="rivya_billing_entry_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(held_after__gte=0, balance_after__gte=F("held_after")),
                name="rivya_billing_entry_after_in_range",
            ),
            models.CheckConstraint(condition=_effect_condition(), name="rivya_billing_entry_effect_by_type"),
            models.CheckConstraint(
                condition=Q(type__in=[EntryType.GRANT.value, EntryType.ADJUST.value, EntryType.EXPIRE.value])
                | Q(hold__isnull=False),
                name="rivya_billing_entry_hold_lines_have_hold",
            ),
        ]
        # Listing is by (wallet, sequence), the unique constraint's index; this one is for
        # reconciling a charge: every line of one task or chat turn.
        indexes = [models.Index(fields=["wallet", "reference"], name="rivya_entry_reference")]

    def __str__(self) -> str:
        return f"{self.public_id} #{self.sequence} {self.type} {self.amount}"

    @property
    def available_after(self) -> int:
        return self.balance_after - self.held_after

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerImmutableError("Ledger entries are append-only; post a correcting entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise LedgerImmutableError("Ledger entries are append-only; post a correcting entry instead.")
