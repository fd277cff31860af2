"""System checks for configuration that would break the API at run time."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, register
from django.core.checks import Warning as CheckWarning

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


# What a generation's webhook payload carries besides the client's input and metadata
# (ids, status, credits, timestamps, output file objects with signed URLs), generously.
PAYLOAD_ALLOWANCE_BYTES = 32 * 1024


@register()
def check_generation_payload_budget(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """User data admitted at submission must fit the webhook payload built from it (issue 21's poison pill)."""
    from rivya_api.conf import api_settings
    from rivya_webhooks.conf import webhooks_settings

    user_data = int(api_settings.GENERATION_USER_DATA_MAX_BYTES)
    payload = int(webhooks_settings.MAX_PAYLOAD_BYTES)
    if user_data + PAYLOAD_ALLOWANCE_BYTES > payload:
        return [
            Error(
                f"RIVYA_API GENERATION_USER_DATA_MAX_BYTES ({user_data}) plus {PAYLOAD_ALLOWANCE_BYTES} bytes for the "
                f"rest of a generation event exceeds RIVYA_WEBHOOKS MAX_PAYLOAD_BYTES ({payload}): a task whose "
                "input fits could never publish its finishing event.",
                hint="Lower GENERATION_USER_DATA_MAX_BYTES or raise MAX_PAYLOAD_BYTES.",
                id="rivya_api.E003",
            )
        ]
    return []


GATE = "rivya_api.common.gate.RequestGateMiddleware"


@register()
def check_gate_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckWarning]:
    """Without the gate, hostile input (NUL, deep JSON, bad hosts) reaches code that answers 500."""
    if GATE in settings.MIDDLEWARE:
        return []
    return [
        CheckWarning(
            f"{GATE} is not in MIDDLEWARE: hostile input reaches the API's parsers and the database unchecked.",
            hint="Put it right after rivya_api.common.middleware.RequestIdMiddleware.",
            id="rivya_api.W001",
        )
    ]
