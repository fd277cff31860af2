"""System checks: an invalid ``RIVYA_API["MODELS"]`` fails at startup, naming model and field; an empty one warns."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Warning, register

from rivya_api.catalog.registry import inspect_catalog
from rivya_api.conf import api_settings

CATALOG_ERROR_ID = "rivya_api.E100"
EMPTY_CATALOG_ID = "rivya_api.W101"


@register()
def check_model_catalog(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    if not api_settings.MODELS:
        return [
            Warning(
                "The model catalog is empty: GET /api/v1/models lists nothing and every generation is refused.",
                hint='Declare your models, or opt into the built-in offline ones with RIVYA_API = {"MODELS": '
                '"rivya_api.catalog.local_models.LOCAL_MODELS", ...}.',
                obj='RIVYA_API["MODELS"]',
                id=EMPTY_CATALOG_ID,
            )
        ]
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
