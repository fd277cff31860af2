"""Plain factory functions shared by every suite."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model

from rivya_api.accounts import account_for_user, get_account_model

_counter = itertools.count(1)


def user_create(username: str | None = None, **extra: Any) -> Any:
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password="pw-" + username, **extra)


def account_create(name: str | None = None) -> Any:
    """An account of whatever model ``RIVYA_ACCOUNT_MODEL`` names, through the host's hook."""
    account = account_for_user(user_create(name))
    assert isinstance(account, get_account_model())
    return account
