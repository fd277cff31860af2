"""What a key may do: its scopes, its model allow-list, and the one map from operation to scope.

Every authenticated API view declares ``required_scopes``: for a viewset, the
scope each action needs (``{"list": "files:read", "create": "files:write"}``);
for a plain ``APIView``, the scope each HTTP method needs (``{"get": …}``).
``ANY_KEY`` (None) marks an operation any key may call (``GET /key``). That map
is the only place an operation's scope is written down:

* ``HasScope`` (every ``AccountScopedMixin`` view's permission) reads it per
  request and refuses a key without the scope: 403 ``insufficient_scope`` whose
  message names the scope. An operation that declares nothing is refused too
  (fail closed, and a 500 in tests via ``ImproperlyConfigured``);
* ``rivya_api.common.schema`` writes it into the OpenAPI document as the
  operation's ``x-rivya-scope`` (and into its description), where the tests read
  it to call every operation with a key that lacks its scope.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission

from rivya_api.keys.exceptions import APIKeyError

SCOPES: tuple[str, ...] = (
    "models:read",
    "generations:read",
    "generations:write",
    "files:read",
    "files:write",
    "chat:read",
    "chat:write",
    "credits:read",
    "credits:write",
    "webhooks:read",
    "webhooks:write",
    "keys:read",
    "keys:write",
)
# A key created without a scope list: everything a key could do before scopes existed.
DEFAULT_SCOPES: tuple[str, ...] = tuple(scope for scope in SCOPES if not scope.startswith("keys:"))

ANY_KEY = None  # the declared scope of an operation any key may call
OPENAPI_EXTENSION = "x-rivya-scope"


def default_scopes() -> list[str]:
    """The field default of ``APIKey.scopes`` (a callable, so every key gets its own list)."""
    return list(DEFAULT_SCOPES)


class InsufficientScopeError(APIKeyError):
    """The key lacks the scope an operation needs (403 ``insufficient_scope``)."""

    def __init__(self, message: str, *, scope: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.scope = scope


class ModelNotAllowedError(APIKeyError):
    """The key's model allow-list leaves this model out (403 ``model_not_allowed``)."""

    param = "model"


def scopes_normalize(scopes: Iterable[Any] | None, *, param: str = "scopes") -> list[str]:
    """A clean scope list in the canonical order; ``APIKeyError`` names an unknown scope."""
    if scopes is None:
        return default_scopes()
    given = list(scopes)
    for index, scope in enumerate(given):
        if scope not in SCOPES:
            raise APIKeyError(
                f"Unknown scope {str(scope)[:60]!r}; scopes are: {', '.join(SCOPES)}.", param=f"{param}[{index}]"
            )
    return [scope for scope in SCOPES if scope in given]


def operation_scope(view: Any, method: str) -> str | None:
    """The scope an operation of ``view`` needs (``ANY_KEY``: none); ``ImproperlyConfigured`` if undeclared."""
    declared = getattr(view, "required_scopes", None)
    if declared is None:
        raise ImproperlyConfigured(f"{type(view).__name__} declares no required_scopes.")
    method = method.lower()
    action = getattr(view, "action", None)
    for name in (action, method, "get" if method == "head" else None):
        if name and name in declared:
            return declared[name]
    raise ImproperlyConfigured(f"{type(view).__name__} declares no scope for {action or method}.")


def key_has_scope(api_key: Any, scope: str | None) -> bool:
    return scope is ANY_KEY or scope in (api_key.scopes or ())


def insufficient_scope(scope: str, *, param: str | None = None) -> InsufficientScopeError:
    return InsufficientScopeError(
        f"This API key lacks the {scope} scope this request needs. Use a key with {scope}, "
        "or ask for one to be created with it.",
        scope=scope,
        param=param,
    )


class HasScope(BasePermission):
    """Refuses a key without the operation's scope (403 ``insufficient_scope``, naming it)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method == "OPTIONS" or getattr(view, "action", None) == "metadata":
            # DRF's metadata, which then asks again for each method it describes (as the
            # "metadata" action of a viewset): nothing of the account's is read.
            return True
        if not hasattr(view, request.method.lower()):
            return True  # no such operation: DRF answers 405
        scope = operation_scope(view, request.method)
        api_key = getattr(request.user, "api_key", None)
        if api_key is None or key_has_scope(api_key, scope):
            return True
        raise insufficient_scope(scope)


def key_model_check(api_key: Any, model_id: str) -> None:
    """Refuse a model outside the key's allow-list (``models`` null: every model)."""
    allowed = getattr(api_key, "allowed_models", None)
    if allowed is not None and model_id not in allowed:
        raise ModelNotAllowedError(
            f"This API key may not use the model {str(model_id)[:100]!r}; it may use: {', '.join(allowed) or 'none'}."
        )


def key_model_allowed(api_key: Any, model_id: str) -> bool:
    allowed = getattr(api_key, "allowed_models", None)
    return allowed is None or model_id in allowed
