"""Errors of rivya_webhooks. The API maps them to HTTP once (``rivya_api.common.errors.DOMAIN_ERRORS``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

from rivya_core.exceptions import RivyaConfigurationError, RivyaError


class RivyaWebhooksError(RivyaError):
    """Root of every error this app raises on purpose. ``param`` names the offending input."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class InvalidWebhookURLError(RivyaWebhooksError, ValidationError):
    """The URL is malformed, has credentials, a scheme other than http(s), or http without DEBUG."""

    def __init__(self, message: str, *, param: str | None = "url") -> None:
        RivyaWebhooksError.__init__(self, message, param=param)
        ValidationError.__init__(self, message)

    def __str__(self) -> str:
        return self.message  # ValidationError's own __str__ would render "['...']"


class BlockedDestinationError(InvalidWebhookURLError):
    """The host resolves to an address that is not globally routable (SSRF guard)."""


class UnresolvableHostError(InvalidWebhookURLError):
    """The URL's host name does not resolve."""


class UnknownEventTypeError(RivyaWebhooksError):
    """An event type that no app registered."""

    def __init__(self, event_type: str, *, param: str | None = "event_types", valid: str = "") -> None:
        # ``valid`` says what the caller may use instead, so the message tells how to fix the request.
        super().__init__(f"Unknown event type: {event_type!r}.{' ' + valid if valid else ''}", param=param)
        self.event_type = event_type


class InvalidParameterError(RivyaWebhooksError):
    """An input that is malformed (too long, wrong type)."""


class InvalidEventTypesError(InvalidParameterError):
    """A subscription list that is empty or not a list of strings."""


class PayloadTooLargeError(RivyaWebhooksError):
    """An event whose envelope is over ``MAX_PAYLOAD_BYTES``."""


class EndpointDisabledError(RivyaWebhooksError):
    """The operation needs an enabled endpoint."""


class NothingToRedeliverError(RivyaWebhooksError):
    """A redeliver request that matches no enabled endpoint."""


class WebhooksConfigurationError(RivyaConfigurationError):
    """Settings that cannot work (e.g. an encryption key that cannot be derived)."""
