"""The wallet: one per account, its running totals, and its low-balance alert."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from rivya_core.conf import account_model_label
from rivya_core.ids import public_id


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
