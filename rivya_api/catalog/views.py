"""``GET /api/v1/models`` and ``GET /api/v1/models/{id}``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema_view
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from rivya_api.catalog.selectors import catalog_model_get, catalog_models
from rivya_api.catalog.serializers import ModelOutputSerializer
from rivya_api.catalog.spec import KINDS
from rivya_api.common.pagination import list_body
from rivya_api.common.schema import (
    error_responses,
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
    list_of,
)
from rivya_api.common.views import AccountScopedMixin
from rivya_api.keys.scopes import key_model_allowed, key_model_check

# Subclasses first: the first matching class decides the code.

MODEL_EXAMPLE = {
    "id": "rivya-image-1",
    "object": "model",
    "kind": "image",
    "description": "Rivya's built-in image model.",
    "parameters": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1},
            "width": {"type": "integer", "minimum": 64, "maximum": 1536, "default": 512},
            "height": {"type": "integer", "minimum": 64, "maximum": 1536, "default": 512},
        },
    },
    "pricing": {
        "currency": "credits",
        "base": 2,
        "terms": [
            {
                "type": "tiered",
                "parameters": ["width", "height"],
                "tiers": [
                    {"up_to": 262144, "credits": 0},
                    {"up_to": 1048576, "credits": 2},
                    {"up_to": None, "credits": 4},
                ],
            }
        ],
        "default_credits": 2,
        "summary": "2 credits per generation; plus, by width × height: 0 up to 262144, 2 up to 1048576, "
        "4 above 1048576.",
    },
    "limits": {"timeout_seconds": 60},
    "created_at": "2026-05-01T00:00:00Z",
}


@extend_schema_view(
    list=extend_schema(
        operation_id="listModels",
        summary="List models",
        description="Every model available to this API, with its input schema, price rule and limits.",
        tags=["Models"],
        parameters=[
            OpenApiParameter("kind", str, enum=list(KINDS), required=False, description="Only models of this kind.")
        ],
        responses={
            200: list_of(ModelOutputSerializer),
            **error_responses(
                400, codes={400: [("invalid_parameter", "kind must be one of image, video, audio, chat.", "kind")]}
            ),
        },
        examples=[
            OpenApiExample(
                "models",
                value={"object": "list", "data": [MODEL_EXAMPLE], "has_more": False, "next_cursor": None},
                response_only=True,
                status_codes=["200"],
            )
        ],
    ),
    retrieve=extend_schema(
        operation_id="getModel",
        summary="Get a model",
        description="One model by its public id.",
        tags=["Models"],
        responses={
            200: ModelOutputSerializer,
            **error_responses(404, codes={404: [("model_not_found", "No model 'rivya-nope'.", "model")]}),
        },
        examples=[OpenApiExample("model", value=MODEL_EXAMPLE, response_only=True, status_codes=["200"])],
    ),
)
class ModelViewSet(AccountScopedMixin, viewsets.ViewSet):
    """The public model catalog (not paginated: it is short and listed whole)."""

    required_scopes = {"list": "models:read", "retrieve": "models:read"}  # rivya_api.keys.scopes

    lookup_url_kwarg = "model_id"

    def list(self, request: Request) -> Response:
        key = request.user.api_key
        models = [
            m for m in catalog_models(kind=request.query_params.get("kind") or None) if key_model_allowed(key, m.id)
        ]
        data = ModelOutputSerializer(models, many=True).data
        return Response(list_body(list(data), has_more=False))

    def retrieve(self, request: Request, model_id: str) -> Response:
        model = catalog_model_get(model_id)
        key_model_check(request.user.api_key, model.id)
        return Response(ModelOutputSerializer(model).data)

    def get_serializer_class(self) -> Any:  # for the schema generator
        return ModelOutputSerializer
