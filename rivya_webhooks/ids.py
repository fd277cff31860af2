"""Public ids of rivya_webhooks (``we_…``, ``evt_…``, ``whd_…``, ``wha_…``), from ``rivya_core.ids``.

The four functions are the models' defaults, so migrations name them; keep them.
"""

from __future__ import annotations

from rivya_core.ids import public_id

__all__ = ["attempt_id", "delivery_id", "endpoint_id", "event_id", "public_id"]


def endpoint_id() -> str:
    return public_id("we")


def event_id() -> str:
    return public_id("evt")


def delivery_id() -> str:
    return public_id("whd")


def attempt_id() -> str:
    return public_id("wha")
