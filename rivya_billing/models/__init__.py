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

from rivya_billing.models.grants import GRANT_EXPIRY_NOTE, CreditGrant
from rivya_billing.models.holds import Hold, HoldState
from rivya_billing.models.ledger import (
    EFFECTS,
    GRANT_EXPIRY_EFFECT,
    HOLD_LINE_TYPES,
    KEYED_TYPES,
    EntryType,
    LedgerEntry,
    LedgerEntryQuerySet,
    LedgerImmutableError,
    entry_effect,
)
from rivya_billing.models.limits import TOTAL_WINDOW_START, SpendLimit, SpendWindow
from rivya_billing.models.wallets import (
    LOW_BALANCE_NOTE,
    WALLET_REFERENCE_NOTE,
    LowBalanceNotice,
    Wallet,
    new_entry_id,
    new_hold_id,
    new_limit_id,
)

__all__ = [
    "EFFECTS",
    "GRANT_EXPIRY_EFFECT",
    "GRANT_EXPIRY_NOTE",
    "HOLD_LINE_TYPES",
    "KEYED_TYPES",
    "LOW_BALANCE_NOTE",
    "TOTAL_WINDOW_START",
    "WALLET_REFERENCE_NOTE",
    "CreditGrant",
    "EntryType",
    "Hold",
    "HoldState",
    "LedgerEntry",
    "LedgerEntryQuerySet",
    "LedgerImmutableError",
    "LowBalanceNotice",
    "SpendLimit",
    "SpendWindow",
    "Wallet",
    "entry_effect",
    "new_entry_id",
    "new_hold_id",
    "new_limit_id",
]
