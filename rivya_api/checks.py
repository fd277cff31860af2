"""System checks for configuration that would break the API at run time."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.checks import Error, register

from rivya_billing.conf import account_model_label


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
