"""Errors of the generation services. Plain domain errors under ``RivyaError``:
``rivya_api.common.errors.DOMAIN_ERRORS`` gives each its status, code and headers."""

from __future__ import annotations

from rivya_core.exceptions import RivyaError


class GenerationError(RivyaError):
    """Root of the generation errors."""


class ModelNotSupportedError(GenerationError):
    """The model is of a kind this endpoint does not run (chat models have their own)."""

    param = "model"


class InputFileNotFoundError(GenerationError):
    """An input parameter names a file this account does not have (a 400: the body names it, not the URL)."""


class InputTooLargeError(GenerationError):
    """Input and metadata together would not fit the task's webhook events."""

    param = "input"


class MaxCreditsExceededError(GenerationError):
    """The price is above the request's ``max_credits``; nothing was reserved."""

    param = "max_credits"


class GenerationNotFoundError(GenerationError):
    """No generation of this account has this id (another account's is one of these)."""

    param = "task_id"


class GenerationNotCancelableError(GenerationError):
    """The generation has already finished."""


class InvalidGenerationFilterError(GenerationError):
    """A list filter names no status."""

    param = "status"
