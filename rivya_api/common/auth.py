"""Who a request acts as.

API-key authentication puts an ``ApiPrincipal`` in ``request.user`` (and the key
in ``request.auth``); views and services reach the account through
``request_account``. The principal is not a user: a host's account may be an
organisation, and DRF only needs ``is_authenticated`` from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework.permissions import BasePermission


@dataclass(frozen=True)
class ApiPrincipal:
    account: Any
    api_key: Any
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True
    is_staff: bool = False

    @property
    def pk(self) -> Any:
        return self.api_key.pk


def request_account(request: Any) -> Any:
    """The account an authenticated API request acts as."""
    return request.user.account


class HasAccount(BasePermission):
    """Allows requests whose authentication produced an account.

    A failure here with an authenticator in place becomes DRF's NotAuthenticated,
    i.e. a 401 with ``WWW-Authenticate``, never a 403.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.user, ApiPrincipal)
