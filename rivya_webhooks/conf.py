"""Settings for rivya_webhooks, read from the ``RIVYA_WEBHOOKS`` dict."""

from __future__ import annotations

from typing import Any

from rivya_billing.conf import AppSettings

DEFAULTS: dict[str, Any] = {}

webhooks_settings = AppSettings("RIVYA_WEBHOOKS", DEFAULTS)
