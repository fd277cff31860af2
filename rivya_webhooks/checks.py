"""System checks for configurations of rivya_webhooks that would bite in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from rivya_webhooks.conf import webhooks_settings


@checks.register(checks.Tags.security, deploy=True)
def check_private_networks(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if webhooks_settings.ALLOW_PRIVATE_NETWORKS and not settings.DEBUG:
        return [
            checks.Warning(
                "Webhooks may be sent to private and loopback addresses (ALLOW_PRIVATE_NETWORKS).",
                hint="Leave RIVYA_WEBHOOKS_ALLOW_PRIVATE_NETWORKS unset unless every account is trusted.",
                id="rivya_webhooks.W001",
            )
        ]
    return []


@checks.register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    schedule = webhooks_settings.RETRY_SCHEDULE
    if not isinstance(schedule, (list, tuple)) or not all(
        isinstance(item, (int, float)) and item > 0 for item in schedule
    ):
        errors.append(
            checks.Error(
                "RIVYA_WEBHOOKS['RETRY_SCHEDULE'] must be a list of positive seconds.", id="rivya_webhooks.E001"
            )
        )
    visibility = (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get("visibility_timeout")
    if visibility and float(webhooks_settings.COUNTDOWN_MAX_SECONDS) >= float(visibility):
        errors.append(
            checks.Error(
                "RIVYA_WEBHOOKS['COUNTDOWN_MAX_SECONDS'] must be below the broker's visibility_timeout, "
                "or Redis redelivers delayed retries early.",
                id="rivya_webhooks.E002",
            )
        )
    return errors
