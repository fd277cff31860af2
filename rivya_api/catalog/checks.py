"""System check: an invalid ``RIVYA_API["MODELS"]`` fails at startup, naming model and field."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from rivya_api.catalog.registry import inspect_catalog
from rivya_api.conf import api_settings

CATALOG_ERROR_ID = "rivya_api.E100"


@register()
def check_model_catalog(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    _, issues = inspect_catalog(api_settings.MODELS)
    return [
        Error(
            str(issue),
            hint="See rivya_api.catalog.spec for the shape of a catalog entry.",
            obj='RIVYA_API["MODELS"]',
            id=CATALOG_ERROR_ID,
        )
        for issue in issues
    ]
