"""Fixtures of the settings pages' tests: logged-in browsers (Django's test client) per account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from rivya_api.accounts import account_for_user
from tests import factories


@dataclass
class Member:
    """A user who can log in, the account they act as, and a test client logged in as them."""

    user: Any
    account: Any
    client: Client
    password: str


@pytest.fixture
def make_member(db: None):
    def make(username: str | None = None, **extra: Any) -> Member:
        user = factories.user_create(username, **extra)
        client = Client()
        client.force_login(user)
        return Member(user=user, account=account_for_user(user), client=client, password="pw-" + user.username)

    return make


@pytest.fixture
def member(make_member: Any) -> Member:
    return make_member()


@pytest.fixture
def stranger(make_member: Any) -> Member:
    """Someone with their own account: none of ``member``'s objects may be reachable by them."""
    return make_member()
