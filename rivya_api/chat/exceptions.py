"""Errors of the Chat API's services.

Plain domain errors under ``RivyaError``: ``rivya_api.common.errors.DOMAIN_ERRORS``
gives each its status, code and headers, wherever it is raised.
"""

from __future__ import annotations

from rivya_core.exceptions import RivyaError


class ChatError(RivyaError):
    """Root of the chat errors."""


class ChatSessionNotFoundError(ChatError):
    """No API session of this account has this id (another account's session is one of these)."""


class ChatSessionModelMismatchError(ChatError):
    """A session continues with the model it started with."""

    param = "model"


class ChatSessionBusyError(ChatError):
    """The session has a turn in progress; one turn runs at a time per session."""

    def __init__(self, message: str, *, param: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, param=param)
        self.retry_after = retry_after


class ChatContextLengthError(ChatError):
    """The prompt plus the output budget does not fit the model's context window."""


class ChatCreditsError(ChatError):
    """The account cannot pay for the turn's upper-bound price (its prompt plus the output budget)."""

    def __init__(self, *, requested: int, available: int) -> None:
        super().__init__(
            f"This turn needs up to {requested} credits (its prompt plus the output budget); "
            f"{available} are available. Lower max_tokens or add credits."
        )
        self.requested = requested
        self.available = available
