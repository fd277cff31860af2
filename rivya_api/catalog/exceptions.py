"""Errors of the model catalog.

``CatalogConfigError`` is a configuration problem (the ``RIVYA_API["MODELS"]``
setting); the system check reports the same problems at startup. The others
are raised for API input and are mapped to HTTP in ``rivya_api.common.errors.DOMAIN_ERRORS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

from rivya_core.exceptions import RivyaError

if TYPE_CHECKING:
    from rivya_api.catalog.spec import CatalogIssue


class CatalogError(RivyaError):
    """Root of every catalog error. ``param`` names the request field at fault, if any."""


class CatalogConfigError(CatalogError, ImproperlyConfigured):
    """``RIVYA_API["MODELS"]`` is invalid; ``issues`` names each model and field at fault."""

    def __init__(self, issues: Sequence[CatalogIssue]) -> None:
        self.issues = list(issues)
        super().__init__("Invalid model catalog: " + "; ".join(str(issue) for issue in self.issues))


class ModelNotFoundError(CatalogError):
    """No listed model has this id (unknown, or its provider is not available here)."""

    param = "model"


class InvalidInputError(CatalogError):
    """The input does not match the model's ``parameters`` schema; ``param`` is ``input.<name>``."""

    param = "input"


class MissingInputError(InvalidInputError):
    """A required input parameter is missing."""


class UnknownInputError(InvalidInputError):
    """The input has a parameter the model does not define."""


class PricingError(CatalogError):
    """The price rule cannot be applied to these parameters (a catalog bug, not a client error)."""
