"""Errors of the keys resource. Admin, pages and commands show their message as is."""

from __future__ import annotations

from rivya_core.exceptions import RivyaError


class APIKeyError(RivyaError):
    """Root of every API-key error."""


class APIKeyStateError(APIKeyError):
    """The key is in a state that forbids the operation (rolling a revoked key, …)."""


class APIKeyGraceError(APIKeyError, ValueError):
    """A roll grace period outside what is allowed (0 up to ``MAX_ROLL_GRACE``)."""
