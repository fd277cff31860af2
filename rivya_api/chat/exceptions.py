"""Errors of the Chat API's services.

They are ``ApiError``s (the chat resource lives in ``rivya_api``), so each
carries its status, stable code and the request field at fault, and renders
in the one error shape wherever it is raised.
"""

from __future__ import annotations

from rivya_api.common.errors import ApiError


class ChatError(ApiError):
    """Root of the chat errors."""

    status_code = 400
    default_code = "invalid_request"


class ChatSessionNotFoundError(ChatError):
    """No API session of this account has this id (another account's session is one of these)."""

    status_code = 404
    default_code = "session_not_found"


class ChatSessionBusyError(ChatError):
    """The session has a turn in progress; one turn runs at a time per session."""

    status_code = 409
    default_code = "session_busy"

    def __init__(self, message: str, *, param: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, param=param, headers={"Retry-After": str(retry_after)})


class ChatContextLengthError(ChatError):
    """The prompt plus the output budget does not fit the model's context window."""

    default_code = "context_length_exceeded"


class ChatCreditsError(ChatError):
    """The account cannot pay for the turn's upper-bound price (its prompt plus the output budget)."""

    status_code = 402
    default_code = "insufficient_credits"

    def __init__(self, *, requested: int, available: int) -> None:
        super().__init__(
            f"This turn needs up to {requested} credits (its prompt plus the output budget); "
            f"{available} are available. Lower max_tokens or add credits.",
            headers={"x-should-retry": "false"},
        )
        self.requested = requested
        self.available = available
