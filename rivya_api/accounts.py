"""The account boundary: which model is the account, and whose account a user acts as.

Every key, wallet, task, file, session and webhook endpoint belongs to one
account. ``RIVYA_ACCOUNT_MODEL`` (default: the user model) names the model, so a
host can point it at its own organisation model.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from rivya_api.conf import api_settings
from rivya_core.conf import get_account_model

__all__ = ["account_for_user", "account_get_or_create_for_username", "get_account_model", "user_is_account"]


def user_is_account(user: Any) -> Any:
    """Default ``ACCOUNT_FOR_USER``: with the user model as account, a user is its own account."""
    return user


def account_is_active(account: Any) -> bool:
    """Default ``ACCOUNT_IS_ACTIVE``: an account with ``is_active = False`` (a deactivated user) is disabled.

    A host whose account model says it differently (a suspended organisation, an
    unpaid plan) names its own callable in ``RIVYA_API["ACCOUNT_IS_ACTIVE"]``; when
    what it reads lives outside the account row, it calls
    ``rivya_api.keys.services.api_keys_invalidate(account=…)`` after a change, so
    cached keys see it at once (saving the account row does that by itself).
    """
    return getattr(account, "is_active", True) is not False


def account_for_user(user: Any) -> Any:
    """The account a logged-in user acts as (may create it, as the host's hook decides)."""
    return api_settings.ACCOUNT_FOR_USER(user)


@transaction.atomic
def account_get_or_create_for_username(*, username: str) -> tuple[Any, Any, bool]:
    """``(account, user, user_created)`` for ``username``, creating the user if needed.

    A created user has an unusable password (set one with ``changepassword``);
    the account is whatever the host's ``ACCOUNT_FOR_USER`` hook makes of the user.
    """
    user_model = get_user_model()
    username = user_model.normalize_username(username)
    user, created = user_model._default_manager.get_or_create(**{user_model.USERNAME_FIELD: username})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return account_for_user(user), user, created
