"""The secret itself: how it is generated, recognised, hashed and shown.

``rvya_sk_`` + ``secrets.token_urlsafe(32)`` (32 random bytes, 43 URL-safe
characters). Only ``secret_hash`` of it is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets

SECRET_PREFIX = "rvya_sk_"
SECRET_BYTES = 32
# The random part is 43 characters today; a little room either way lets a
# future, longer format coexist without a second code path.
_WELL_FORMED = re.compile(r"rvya_sk_[A-Za-z0-9_-]{40,128}")
# Shown after creation: the scheme prefix plus 4 random characters, and the last 4.
DISPLAY_PREFIX_LENGTH = len(SECRET_PREFIX) + 4


def secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def secret_is_well_formed(secret: str) -> bool:
    return _WELL_FORMED.fullmatch(secret) is not None


def secret_hash(secret: str) -> str:
    """Hex SHA-256 of the whole secret: the stored, indexed lookup value."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_display_parts(secret: str) -> tuple[str, str]:
    """``(prefix, last4)``: the only parts of a secret ever stored or shown again."""
    return secret[:DISPLAY_PREFIX_LENGTH], secret[-4:]
