"""Typed errors of the credit ledger.

Every error is a ``RivyaError``; callers catch the specific class they can act
on. ``param`` names the argument at fault where there is one, so an API layer
can map an error to a response that points at the offending field without
parsing messages. Nothing here knows about HTTP: the API maps these classes to
statuses in one table (``rivya_api.common.errors.DOMAIN_ERRORS``).
"""

from __future__ import annotations

from typing import Any

from rivya_core.exceptions import RivyaError

__all__ = ["RivyaError"]  # re-exported: callers imported the root from here before rivya_core existed


class BillingError(RivyaError):
    """Root of the credit ledger's errors."""


class InvalidAmountError(BillingError, ValueError):
    """An amount is not an integer in the range the operation accepts."""

    param = "amount"


class InvalidReferenceError(BillingError, ValueError):
    """A reference is empty or longer than the ledger stores (255 characters)."""

    param = "reference"


class InsufficientCreditsError(BillingError):
    """The wallet's available credits (balance minus held) cannot cover the amount.

    No ``param``: the request was fine, the wallet is short (``requested`` and
    ``available`` say by how much).
    """

    def __init__(self, message: str, *, requested: int, available: int) -> None:
        super().__init__(message)
        self.requested = requested
        self.available = available


class ReferenceConflictError(BillingError):
    """The reference was already used for an operation with different arguments.

    ``param`` names the first argument that differs (``amount``,
    ``charge_reference``, …); ``existing`` is what the reference was first used with.
    """

    def __init__(self, message: str, *, param: str, existing: Any, given: Any) -> None:
        super().__init__(message, param=param)
        self.existing = existing
        self.given = given


class HoldNotFoundError(BillingError):
    """No hold with this reference exists in the account's wallet."""

    param = "reference"


class HoldNotPendingError(BillingError):
    """The hold was already resolved (settled, released or expired) in another way."""

    param = "reference"

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state


class StaleHoldError(HoldNotPendingError):
    """A late call from a worker whose lease on the hold has lapsed or been taken over.

    Raised when the hold's lease expired (whether or not the sweeper has run
    yet) or when the caller's ``lease_token`` is no longer the hold's current one.
    """


class HoldLeaseActiveError(BillingError):
    """The hold cannot be expired: its lease has not lapsed."""

    param = "reference"


class RefundNotAllowedError(BillingError):
    """The charge cannot be refunded by this amount: it was not captured, or is refunded already."""

    param = "amount"


class LedgerConcurrencyError(BillingError):
    """The wallet changed under a row lock that should have excluded writers.

    Never expected: it means a writer bypassed the services (or the database
    does not honour the lock), and the transaction is rolled back rather than
    risk a wrong balance.
    """


class SpendLimitExceededError(BillingError):
    """The reservation would take the spend limit's ``used`` past its ``credits`` in the current window.

    No ``param``: the request was fine, the limit is spent. ``credits``, ``used``,
    ``requested``, ``window`` and ``resets_at`` (None for the ``total`` window) say
    how; ``owner_ref`` names who is limited, ``window_start`` which window.
    """

    def __init__(
        self,
        message: str,
        *,
        limit_id: int,
        owner_ref: str,
        credits: int,
        used: int,
        requested: int,
        window: str,
        window_start: Any,
        resets_at: Any,
    ) -> None:
        super().__init__(message)
        self.limit_id = limit_id
        self.owner_ref = owner_ref
        self.credits = credits
        self.used = used
        self.requested = requested
        self.window = window
        self.window_start = window_start
        self.resets_at = resets_at


class SpendLimitError(BillingError, ValueError):
    """A spend limit's settings are invalid (negative credits, an unknown window)."""
