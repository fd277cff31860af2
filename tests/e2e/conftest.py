"""Fixtures of the end-to-end suites (the browser harness lives in ``tests.e2e.browser``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.browser import chromium, live_asgi, page, upstream  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Users log in through the real server, whose settings know only the standard hashers."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
