"""System checks of ``RIVYA_BILLING``: settings that would break billing at run time fail at start-up."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from rivya_billing.conf import billing_settings

POSITIVE_INTEGERS = ("HOLD_LEASE_SECONDS", "HOLD_RENEW_SECONDS", "EXPIRE_BATCH_SIZE", "ACTIVITY_WINDOW_DAYS")
OVERRUN_POLICIES = ("cap", "available")


@register()
def check_billing_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    policy = billing_settings.OVERRUN_POLICY
    if policy not in OVERRUN_POLICIES:
        errors.append(
            Error(
                f"RIVYA_BILLING['OVERRUN_POLICY'] is {policy!r}; it must be one of {', '.join(OVERRUN_POLICIES)}.",
                id="rivya_billing.E001",
            )
        )
    for name in POSITIVE_INTEGERS:
        value = getattr(billing_settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                Error(f"RIVYA_BILLING[{name!r}] must be a positive integer, not {value!r}.", id="rivya_billing.E002")
            )
    return errors
