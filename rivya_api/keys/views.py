"""``GET /key`` (the calling key) and the provisioning API: ``/keys`` and ``/keys/{key_id}``.

With ``keys:write`` a key creates, changes and revokes the account's keys; with
``keys:read`` it lists and reads them. A key never gives another key a scope or a
model it lacks itself (403 ``insufficient_scope``), and never changes its own
allow-list or credit limit. Another account's key is a 404.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rivya_api.common.errors import NotFoundError
from rivya_api.common.pagination import page_response
from rivya_api.common.parsers import JSONParser
from rivya_api.common.schema import (
    PAGINATION_PARAMETERS,
    ErrorExample,
    error_responses,
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
    list_of,
)
from rivya_api.common.views import AccountScopedMixin
from rivya_api.keys import selectors, services
from rivya_api.keys.models import APIKey
from rivya_api.keys.scopes import insufficient_scope
from rivya_api.keys.serializers import (
    APIKeyCreateInputSerializer,
    APIKeyOutputSerializer,
    APIKeyUpdateInputSerializer,
    APIKeyWithSecretOutputSerializer,
)

TAG = "API keys"
KEY_ID = OpenApiParameter("key_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="`key_…`")

KEY_EXAMPLE = {
    "id": "key_2bX9fLq4TzR7mWc1",
    "object": "api_key",
    "name": "customer-42",
    "prefix": "rvya_sk_AbCd…wxyz",
    "status": "active",
    "scopes": ["models:read", "generations:read", "generations:write"],
    "models": ["rivya-image-1"],
    "credit_limit": {"credits": 500, "window": "month", "used": 120, "resets_at": "2027-01-01T00:00:00Z"},
    "created_at": "2026-12-06T17:00:00Z",
    "expires_at": None,
    "last_used_at": "2026-12-06T17:05:00Z",
}
SECRET_EXAMPLE = {
    **KEY_EXAMPLE,
    "credit_limit": {"credits": 500, "window": "month", "used": 0, "resets_at": "2027-01-01T00:00:00Z"},
    "last_used_at": None,
    "secret": "rvya_sk_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdwxyz",
}

_NOT_FOUND = ErrorExample("key_not_found", "No API key key_2bX9fLq4TzR7mWc1 in this account.", "key_id")
_SCOPE = ErrorExample(
    "insufficient_scope",
    "This API key lacks the keys:write scope this request needs. Use a key with keys:write, "
    "or ask for one to be created with it.",
)
_WIDEN = ErrorExample(
    "insufficient_scope",
    "This API key lacks the webhooks:write scope, so it cannot give it to another key.",
    "scopes",
)
_INVALID = [
    ErrorExample("invalid_parameter", "Unknown model 'nope'; GET /api/v1/models lists the models.", "models[0]"),
    ErrorExample(
        "invalid_choice", '"week" is not a valid choice; use one of: total, day, month.', "credit_limit.window"
    ),
]


def _key_or_404(account: Any, key_id: str) -> APIKey:
    key = selectors.api_key_get(account=account, public_id=key_id)
    if key is None:
        raise NotFoundError(f"No API key {key_id[:40]} in this account.", code="key_not_found", param="key_id")
    return key


def _key_body(key: APIKey, *, secret: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"limits": selectors.api_key_credit_limits([key])}
    if secret is None:
        return APIKeyOutputSerializer(key, context=context).data
    return APIKeyWithSecretOutputSerializer(key, context={**context, "secret": secret}).data


def _credit_limit(data: dict[str, Any]) -> Any:
    value = data["credit_limit"]
    return None if value is None else services.CreditLimit(credits=value["credits"], window=value["window"])


class CurrentKeyView(AccountScopedMixin, APIView):
    """``GET /key``: the calling key, whatever its scopes."""

    required_scopes = {"get": None}  # rivya_api.keys.scopes: any key

    @extend_schema(
        operation_id="getCurrentKey",
        summary="Get the calling API key",
        description="The key this request was made with: its scopes, models and credit limit with what is used.",
        tags=[TAG],
        responses={200: APIKeyOutputSerializer},
        examples=[OpenApiExample("key", value=KEY_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def get(self, request: Request) -> Response:
        return Response(_key_body(request.user.api_key))


class APIKeyViewSet(AccountScopedMixin, viewsets.ViewSet):
    """The account's keys: list, create (secret shown once), read, change, revoke."""

    required_scopes = {
        "list": "keys:read",
        "retrieve": "keys:read",
        "create": "keys:write",
        "partial_update": "keys:write",
        "destroy": "keys:write",
    }  # rivya_api.keys.scopes

    parser_classes = [JSONParser]
    lookup_url_kwarg = "key_id"

    @extend_schema(
        operation_id="listKeys",
        summary="List API keys",
        description="The account's keys, newest first, revoked and expired ones included. Secrets are never listed.",
        tags=[TAG],
        parameters=PAGINATION_PARAMETERS,
        responses={200: list_of(APIKeyOutputSerializer), **error_responses(400, 403, codes={403: [_SCOPE]})},
        examples=[
            OpenApiExample(
                "keys",
                value={"object": "list", "data": [KEY_EXAMPLE], "has_more": False, "next_cursor": None},
                response_only=True,
                status_codes=["200"],
            )
        ],
    )
    def list(self, request: Request) -> Response:
        def serialize(keys: list[APIKey]) -> list[Any]:
            context = {"limits": selectors.api_key_credit_limits(keys)}
            return APIKeyOutputSerializer(keys, many=True, context=context).data

        return page_response(request, selectors.api_key_list(account=self.account), serialize)

    @extend_schema(
        operation_id="createKey",
        summary="Create an API key",
        description=(
            "Issues a key for this account, e.g. for one of your customers: with `scopes`, a `models` "
            "allow-list and a `credit_limit`. The response carries the `secret`, shown only here. The new "
            "key never has a scope or a model the calling key lacks (403 `insufficient_scope`)."
        ),
        tags=[TAG],
        request=APIKeyCreateInputSerializer,
        responses={
            201: APIKeyWithSecretOutputSerializer,
            **error_responses(400, 403, codes={400: _INVALID, 403: [_SCOPE, _WIDEN]}),
        },
        examples=[
            OpenApiExample(
                "restricted, limited key",
                value={
                    "name": "customer-42",
                    "scopes": ["models:read", "generations:read", "generations:write"],
                    "models": ["rivya-image-1"],
                    "credit_limit": {"credits": 500, "window": "month"},
                },
                request_only=True,
            ),
            OpenApiExample("created", value=SECRET_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    )
    def create(self, request: Request) -> Response:
        data = APIKeyCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        caller = request.user.api_key
        key, secret = services.api_key_create(
            account=self.account,
            name=params["name"],
            scopes=params.get("scopes"),
            models=params.get("models"),
            credit_limit=_credit_limit(params) if "credit_limit" in params else None,
            granted_by=caller,
            ip=request.META.get("REMOTE_ADDR"),
            source="api",
        )
        return Response(_key_body(key, secret=secret), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="getKey",
        summary="Get an API key",
        tags=[TAG],
        parameters=[KEY_ID],
        responses={200: APIKeyOutputSerializer, **error_responses(403, 404, codes={403: [_SCOPE], 404: [_NOT_FOUND]})},
        examples=[OpenApiExample("key", value=KEY_EXAMPLE, response_only=True, status_codes=["200"])],
    )
    def retrieve(self, request: Request, key_id: str) -> Response:
        return Response(_key_body(_key_or_404(self.account, key_id)))

    @extend_schema(
        operation_id="updateKey",
        summary="Update an API key",
        description=(
            "Changes the given fields: `name`, `models` (null: every model) and `credit_limit` (null removes "
            "it). Scopes cannot change; create a new key instead. The allow-list never reaches beyond the "
            "calling key's, and a key cannot change its own allow-list or limit (403 `insufficient_scope`)."
        ),
        tags=[TAG],
        parameters=[KEY_ID],
        request=APIKeyUpdateInputSerializer,
        responses={
            200: APIKeyOutputSerializer,
            **error_responses(400, 403, 404, codes={400: _INVALID, 403: [_SCOPE, _WIDEN], 404: [_NOT_FOUND]}),
        },
        examples=[
            OpenApiExample(
                "raise the limit", value={"credit_limit": {"credits": 1000, "window": "month"}}, request_only=True
            ),
            OpenApiExample("updated", value=KEY_EXAMPLE, response_only=True, status_codes=["200"]),
        ],
    )
    def partial_update(self, request: Request, key_id: str) -> Response:
        key = _key_or_404(self.account, key_id)
        data = APIKeyUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        caller = request.user.api_key
        if key.pk == caller.pk and ("models" in params or "credit_limit" in params):
            field = "credit_limit" if "credit_limit" in params else "models"
            error = insufficient_scope("keys:write", param=field)
            error.args = (f"A key cannot change its own {field}; use another key with keys:write.",)
            raise error
        key = services.api_key_update(
            api_key=key,
            name=params.get("name", services.UNSET),
            models=params.get("models", services.UNSET),
            credit_limit=_credit_limit(params) if "credit_limit" in params else services.UNSET,
            granted_by=caller,
            ip=request.META.get("REMOTE_ADDR"),
            source="api",
        )
        return Response(_key_body(key))

    @extend_schema(
        operation_id="revokeKey",
        summary="Revoke an API key",
        description="Revokes the key at once, in every process. Revoking a revoked key changes nothing.",
        tags=[TAG],
        parameters=[KEY_ID],
        responses={200: APIKeyOutputSerializer, **error_responses(403, 404, codes={403: [_SCOPE], 404: [_NOT_FOUND]})},
        examples=[
            OpenApiExample(
                "revoked", value={**KEY_EXAMPLE, "status": "revoked"}, response_only=True, status_codes=["200"]
            )
        ],
    )
    def destroy(self, request: Request, key_id: str) -> Response:
        key = _key_or_404(self.account, key_id)
        key = services.api_key_revoke(api_key=key, ip=request.META.get("REMOTE_ADDR"), source="api")
        return Response(_key_body(key))
