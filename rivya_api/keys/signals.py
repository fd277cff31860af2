"""An account that changes (deactivated, suspended) is seen by its keys at once, in every process.

Key lookups are cached with their account (``keystore``), so the account's state
would otherwise be read from the cache for up to ``KEY_CACHE_SECONDS``. Saving
the account marks its keys stale first.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save


def _account_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    if created or kwargs.get("raw"):
        return  # a new account has no keys; fixtures load without side effects
    from rivya_api.keys.services import api_keys_invalidate

    api_keys_invalidate(account=instance)


def connect_account_signals() -> None:
    from rivya_api.accounts import get_account_model

    post_save.connect(_account_saved, sender=get_account_model(), dispatch_uid="rivya_api.keys.account_saved")
