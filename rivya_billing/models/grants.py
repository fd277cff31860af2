"""Expiring grants: the bucket of each grant made with an expiry."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from rivya_billing.models.wallets import Wallet

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
