"""Errors of the Chat API's services, mapped to HTTP in ``rivya_api.chat.views``."""

from __future__ import annotations


class ChatError(Exception):
    """Root of the chat errors: a message for the client, a stable code, the request field at fault."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class ChatSessionNotFoundError(ChatError):
    """No API session of this account has this id (another account's session is one of these)."""

    status = 404
    code = "session_not_found"


class ChatSessionBusyError(ChatError):
    """The session has a turn in progress; one turn runs at a time per session."""

    status = 409
    code = "session_busy"

    def __init__(self, message: str, *, param: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, param=param)
        self.headers = {"Retry-After": str(retry_after)}


class ChatAttachmentError(ChatError):
    """An image attachment does not name a usable Files API image of this account."""

    code = "invalid_attachment"


class ChatContextLengthError(ChatError):
    """The prompt plus the output budget does not fit the model's context window."""

    code = "context_length_exceeded"
