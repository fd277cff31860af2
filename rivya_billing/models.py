"""Models of rivya_billing: one wallet per account, its append-only ledger, and holds.

Invariants, enforced by the database where a constraint can say them:

- ``Wallet``: ``held >= 0`` and ``balance >= held`` (so ``available >= 0``).
  ``balance`` and ``held`` are running totals of the wallet's ledger entries,
  and ``last_sequence`` is the sequence number of its newest entry; the three
  only change in the same transaction as the entries that explain them.
- ``LedgerEntry``: append-only (on PostgreSQL a trigger refuses UPDATE and
  DELETE, see migration 0002). Each type has a fixed effect on balance and held
  (a check constraint ties ``balance_delta``/``held_delta`` to ``type`` and
  ``amount``), sequences are unique per wallet, and a grant, adjust or refund
  reference can be used once per wallet.
- ``Hold``: pending → settled | released | expired, once; one per reference
  per wallet; at most one reserve, settle, release, expire, overrun and waive
  line per hold; refunds never exceed what the hold charged.

Amounts are integers in the wallet's unit (``RIVYA_BILLING["UNIT"]``); there are
no floats anywhere in these tables. The account is whatever model
``RIVYA_ACCOUNT_MODEL`` names, and deleting it never cascades into the ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from rivya_core.conf import account_model_label
from rivya_core.ids import public_id

__all__ = [
    "CreditGrant",
    "EntryType",
    "Hold",
    "HoldState",
    "LedgerEntry",
    "LedgerImmutableError",
    "LowBalanceNotice",
    "SpendLimit",
    "SpendWindow",
    "Wallet",
]


def new_hold_id() -> str:
    return public_id("hold")


def new_entry_id() -> str:
    return public_id("le")


def new_limit_id() -> str:
    return public_id("lim")


class Wallet(models.Model):
    """The account's credits: ``balance`` owned, ``held`` reserved by open holds."""

    account = models.OneToOneField(
        account_model_label(), on_delete=models.PROTECT, related_name="rivya_wallet", verbose_name="account"
    )
    balance = models.BigIntegerField(default=0, help_text="Credits owned (sum of the ledger's balance changes).")
    held = models.BigIntegerField(default=0, help_text="Credits reserved by pending holds.")
    last_sequence = models.BigIntegerField(default=0, help_text="Sequence number of the newest ledger entry.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)
    # The low-balance alert (see ``LOW_BALANCE_NOTE``): set through ``credits_alert_set`` only;
    # ``low_balance_armed`` is moved by the database trigger of migration 0006, never by Python.
    low_balance_threshold = models.BigIntegerField(
        null=True, blank=True, help_text="A credits.low event is published when available falls below this."
    )
    low_balance_armed = models.BooleanField(
        default=True, help_text="False once credits.low fired, until available is back at the threshold or above."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(low_balance_threshold__isnull=True) | Q(low_balance_threshold__gte=1),
                name="rivya_billing_wallet_low_balance_threshold_gte_1",
            ),
            models.CheckConstraint(condition=Q(held__gte=0), name="rivya_billing_wallet_held_gte_0"),
            models.CheckConstraint(condition=Q(balance__gte=F("held")), name="rivya_billing_wallet_available_gte_0"),
            models.CheckConstraint(condition=Q(last_sequence__gte=0), name="rivya_billing_wallet_sequence_gte_0"),
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.account}"

    @property
    def available(self) -> int:
        return self.balance - self.held


WALLET_REFERENCE_NOTE = """
Why ``Hold.wallet`` and ``LedgerEntry.wallet`` have no database foreign-key constraint:
PostgreSQL checks such a constraint at commit by locking the referenced wallet row
``FOR KEY SHARE``; on a busy wallet that is one more tuple lock and WAL record inside
the row's critical section on every reservation (measured in bench/ledger_reserve.py).
The reference is kept sound without it: wallet ids are only ever taken from the wallet
row in the same statement or transaction, wallets are never deleted (PROTECT in the
ORM, and on PostgreSQL a trigger refuses DELETE of wallets and holds, migration 0003),
and ``rivya_ledger_check`` verifies every entry against its wallet and holds.
"""


LOW_BALANCE_NOTE = """
How a ``credits.low`` event is decided exactly once per crossing, on every path that moves
a wallet (the one-statement PostgreSQL reservation included, which this does not change):
a database trigger on the wallet row (migration 0006), fired by every UPDATE of ``balance``,
``held`` or ``low_balance_threshold`` of a wallet that has a threshold, decides in the same
statement and transaction as the change, under the wallet's row lock:

- armed and ``balance - held < low_balance_threshold``: disarm, and insert one
  ``LowBalanceNotice`` (available and threshold at that moment);
- disarmed and ``balance - held >= low_balance_threshold``: re-arm.

Wallet changes are serialised by the row lock, so crossings are decided one after another
on the committed order of changes: a rolled-back change leaves neither a notice nor a state
change, and two concurrent spends cannot both see the alert armed. The notice is a second
outbox: ``credits_low_balance_notices_publish`` hands each one exactly once to the
publisher (rivya_api publishes the webhook event in the transaction that marks it published).
"""


class LowBalanceNotice(models.Model):
    """One crossing of a wallet's low-balance threshold, written by the database trigger.

    ``published_at`` is set in the transaction that publishes it (the ``credits.low`` event),
    so each notice is published once; rows are kept as the alert's history.
    """

    # No database FK constraint: see ``WALLET_REFERENCE_NOTE`` (the trigger writes these rows
    # in the wallet's critical section).
    wallet = models.ForeignKey(
        Wallet, on_delete=models.PROTECT, related_name="low_balance_notices", db_constraint=False
    )
    available = models.BigIntegerField(help_text="Available credits right after the change that crossed.")
    sequence = models.BigIntegerField(
        help_text="The wallet's newest ledger sequence at the crossing (the entry that crossed, or the last "
        "one before a new threshold was set)."
    )
    threshold = models.BigIntegerField(help_text="The threshold that was crossed.")
    created_at = models.DateTimeField(help_text="When the crossing committed (database time).")
    published_at = models.DateTimeField(null=True, blank=True, help_text="When credits.low was published.")

    class Meta:
        indexes = [
            # The publisher's query: what is not published yet, oldest first.
            models.Index(fields=["id"], condition=Q(published_at__isnull=True), name="rivya_low_balance_pending"),
        ]

    def __str__(self) -> str:
        return f"credits.low {self.available} < {self.threshold}"


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


GRANT_EXPIRY_NOTE = """
Expiring grants. A grant made with ``expires_at`` gets a ``CreditGrant`` bucket next to its
``grant`` entry (same reference); grants without expiry need none and never expire.

- Drawing: every ledger line that lowers ``balance`` (settle, overrun, a negative adjust) takes
  ``min(x, remaining)`` from the wallet's buckets in ``(expires_at, id)`` order, in the same
  transaction and under the wallet's row lock (``services.ledger._post``). Reservations do not
  change the balance, so the one-statement reservation is untouched. Hence
  ``sum(remaining) <= balance`` always: a decrease of x lowers the sum by ``min(x, sum)``.
- Refunds return credits as non-expiring credits (they go to no bucket): a refund gives back
  what was charged, and the grant it was drawn from may be gone by then.
- Expiry (``credits_expire_grants``, one bucket per transaction, under the wallet lock): held
  credits are counted against the soonest-expiring buckets first (that is where their settle
  will draw them), so the part of the due bucket ``b`` not covered by holds is
  ``e = max(0, remaining_b - max(0, held - remaining of the buckets before b))``; ``e`` leaves
  as an ``expire`` line without a hold (balance -e) and moves from ``remaining`` to
  ``expired``. ``e <= available`` always, so held credits are never taken, and neither are
  non-expiring credits. What stays (held) keeps the bucket due: a settle draws it, and after a
  release the next sweep expires it.
- ``rivya_ledger_check`` replays the buckets along the ledger and compares them.
"""


class CreditGrant(models.Model):
    """The bucket of one expiring grant: how much of it is left, was spent, and expired.

    ``amount = remaining + drawn + expired`` (a check constraint); see ``GRANT_EXPIRY_NOTE``.
    Written only by ``rivya_billing.services`` under the wallet's row lock.
    """

    # No database FK constraint: see ``WALLET_REFERENCE_NOTE`` (settles write these rows in the
    # wallet's critical section).
    wallet = models.ForeignKey(
        Wallet, on_delete=models.PROTECT, related_name="credit_grants", db_index=False, db_constraint=False
    )
    reference = models.CharField(max_length=255, help_text="The reference of the grant entry.")
    amount = models.BigIntegerField(help_text="Credits granted.")
    remaining = models.BigIntegerField(help_text="Credits of the grant not spent and not expired yet.")
    drawn = models.BigIntegerField(default=0, help_text="Credits of the grant spent.")
    expired = models.BigIntegerField(default=0, help_text="Credits of the grant that expired (its expire entries).")
    expires_at = models.DateTimeField(help_text="When what is left of the grant expires.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["wallet", "reference"], name="rivya_billing_grant_unique_reference"),
            models.CheckConstraint(
                condition=Q(amount__gt=0, remaining__gte=0, drawn__gte=0, expired__gte=0)
                & Q(amount=F("remaining") + F("drawn") + F("expired")),
                name="rivya_billing_grant_amount_parts",
            ),
        ]
        indexes = [
            # Drawing: a wallet's buckets with credits left, soonest expiry first.
            models.Index(fields=["wallet", "expires_at"], condition=Q(remaining__gt=0), name="rivya_grant_wallet_left"),
            # The expiry sweep: buckets with credits left, by expiry.
            models.Index(fields=["expires_at"], condition=Q(remaining__gt=0), name="rivya_grant_due"),
        ]

    def __str__(self) -> str:
        return f"grant {self.reference} ({self.remaining} of {self.amount} left, expires {self.expires_at})"
