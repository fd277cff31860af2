"""Opaque, prefixed, random public ids (``we_…``, ``evt_…``).

A copy of the three lines in ``rivya_api.ids``: this app must not import ``rivya_api``.
"""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def public_id(prefix: str, length: int = 24) -> str:
    """``prefix_`` plus ``length`` base62 characters; never contains a ``.`` (webhook-id rule)."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def endpoint_id() -> str:
    return public_id("we")


def event_id() -> str:
    return public_id("evt")


def delivery_id() -> str:
    return public_id("whd")


def attempt_id() -> str:
    return public_id("wha")
