"""Opaque, prefixed, random, URL-safe public ids (``task_…``, ``key_…``, ``we_…``, ``hold_…``).

One algorithm for every app: ``prefix_`` plus ``length`` base62 characters, each
uniform over the 62 (about 143 bits for the default 24). The characters come from
one urandom read, mapped in C by ``bytes.translate`` (ids are made on the hot
reserve path); the format is the one every stored id already has. An id never
contains a ``.`` (a Standard Webhooks ``webhook-id`` rule).
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Random byte -> base62 character; bytes >= 248 (= 4 x 62) are dropped so that every
# character is uniform over the 62.
_TO_BASE62 = bytes(ord(ALPHABET[b % 62]) for b in range(256))
_UNEVEN = bytes(range(248, 256))


def public_id(prefix: str, length: int = 24) -> str:
    """``prefix_`` plus ``length`` random base62 characters."""
    chars = b""
    while len(chars) < length:
        chars += secrets.token_bytes(length + 8).translate(_TO_BASE62, _UNEVEN)
    return f"{prefix}_" + chars[:length].decode()
