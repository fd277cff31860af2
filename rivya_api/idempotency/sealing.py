"""Stored responses are encrypted at rest: a replay may carry a secret shown only once.

``POST /webhooks`` and ``rotate-secret`` answer with a signing secret, and an
Idempotency-Key replay must give the same answer back, so the response is kept
for the key's retention window. It is kept as a Fernet token (AES-128-CBC +
HMAC-SHA256) under a key derived from ``SECRET_KEY`` (fallbacks decrypt too),
so a database dump shows no secret. Every stored body is sealed, whatever it
holds: no view can forget to ask for it. Bodies written before sealing existed
(no prefix) read as they are.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken

from rivya_core.exceptions import RivyaError
from rivya_webhooks.crypto import fernet_for

PREFIX = b"fernet:"
_SALT = "rivya_api.idempotency.response-body"


class UnreadableResponseError(RivyaError):
    """A stored response cannot be decrypted (``SECRET_KEY`` changed without the old one in the fallbacks)."""


def seal(body: bytes) -> bytes:
    return PREFIX + fernet_for(_SALT).encrypt(bytes(body))


def unseal(stored: bytes | memoryview) -> bytes:
    stored = bytes(stored)
    if not stored.startswith(PREFIX):
        return stored
    try:
        return fernet_for(_SALT).decrypt(stored[len(PREFIX) :])
    except InvalidToken as exc:
        raise UnreadableResponseError("The stored response of this Idempotency-Key cannot be decrypted.") from exc
