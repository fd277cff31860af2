"""Plain factory functions shared by every suite."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model
from django.db import models

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


def two_table_models() -> tuple[Any, Any]:
    """``(Tenant, Org)``: a model and its multi-table child (the parent's columns in the parent's table),
    for the fast paths that read or write one table and must leave such an account model to the ORM.
    Call it inside the test's ``isolate_apps("rivya_api")``, which keeps them out of the real registry."""

    class Tenant(models.Model):
        name = models.CharField(max_length=20)

        class Meta:
            app_label = "rivya_api"

    class Org(Tenant):
        plan = models.CharField(max_length=20)

        class Meta:
            app_label = "rivya_api"

    return Tenant, Org
