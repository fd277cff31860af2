"""Endpoint secrets: generation and encryption at rest.

A secret must be stored in a form we can sign with (HMAC needs the key itself,
unlike API keys, which are stored as hashes), so it is encrypted with Fernet
(AES-128-CBC + HMAC-SHA256) under a key derived from ``SECRET_KEY``. A database
dump alone therefore does not leak signing secrets. Rotating ``SECRET_KEY``
keeps working as long as the old key stays in ``SECRET_KEY_FALLBACKS``: every
fallback is tried on decryption, and ``rivya_webhooks_reencrypt`` rewrites the
stored secrets under the new key.
"""

from __future__ import annotations

import base64
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac

from rivya_webhooks.exceptions import WebhooksConfigurationError

SECRET_PREFIX = "whsec_"
_KEY_SALT = "rivya_webhooks.crypto.endpoint-secret"


def secret_generate() -> str:
    """``whsec_`` + base64 of 32 random bytes (Standard Webhooks asks for 24 to 64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@lru_cache(maxsize=8)
def _fernet(salt: str, keys: tuple[str, ...]) -> MultiFernet:
    if not keys or not keys[0]:
        raise WebhooksConfigurationError("SECRET_KEY is empty: secrets cannot be encrypted.")
    derived = [
        Fernet(base64.urlsafe_b64encode(salted_hmac(salt, "", secret=key, algorithm="sha256").digest())) for key in keys
    ]
    return MultiFernet(derived)


def fernet_for(salt: str) -> MultiFernet:
    """Fernet under a key derived from ``SECRET_KEY`` for ``salt`` (fallback keys decrypt too).

    One salt per kind of secret, so a token of one kind never decrypts as another.
    """
    return _fernet(salt, (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())))


def _current() -> MultiFernet:
    return fernet_for(_KEY_SALT)


def secret_encrypt(secret: str) -> str:
    return _current().encrypt(secret.encode("utf-8")).decode("ascii")


def secret_decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise WebhooksConfigurationError(
            "A webhook secret cannot be decrypted: was SECRET_KEY changed without keeping the old "
            "one in SECRET_KEY_FALLBACKS?"
        ) from exc


def secret_reencrypt(token: str) -> str:
    """The same secret under the current key (after a SECRET_KEY rotation)."""
    return _current().rotate(token.encode("ascii")).decode("ascii")
