"""The root of every error the Rivya apps raise on purpose.

Each app roots its own errors here (``BillingError``, ``RivyaWebhooksError``,
the API's catalog, file and key errors), so a host can catch ``RivyaError`` for
anything Rivya refused. ``param`` names the argument at fault where there is
one. Nothing here knows about HTTP: ``rivya_api`` maps the classes to statuses
in one table (``rivya_api.common.errors.DOMAIN_ERRORS``).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class RivyaError(Exception):
    """Root of every error the Rivya apps raise on purpose."""

    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        if param is not None:
            self.param = param


class RivyaConfigurationError(ImproperlyConfigured):
    """Settings that cannot work; raised at startup or first use, never for a request's input."""
