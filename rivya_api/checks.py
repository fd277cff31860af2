"""System checks for configuration that would break the API at run time."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.checks import Error, register

from rivya_core.conf import account_model_label


@register()
def check_account_model(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    label = account_model_label()
    try:
        apps.get_model(label, require_ready=False)
    except (LookupError, ValueError):
        return [
            Error(
                f"RIVYA_ACCOUNT_MODEL refers to {label!r}, which is not an installed model.",
                id="rivya_api.E001",
            )
        ]
    return []


@register()
def check_rate_limit(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from rivya_api.conf import api_settings
    from rivya_api.keys.throttling import parse_rate

    try:
        parse_rate(api_settings.RATE_LIMIT)
    except ValueError as exc:
        return [Error(str(exc), hint="Set RIVYA_API_RATE_LIMIT to e.g. 1200/min, 50/10s or off.", id="rivya_api.E002")]
    return []
