"""The API's own document and its interactive reference, both public.

Thin subclasses of drf-spectacular's views, so that both routes appear in the
document itself with clean operation ids (the document lists every
``/api/v1/`` route, its own included) and the reference page is served from
drf-spectacular-sidecar's static files, never a CDN.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response


class _JsonErrorsMixin:
    """GET and HEAD only; every error in the API's JSON error shape.

    These views render their success with a document or HTML renderer, which
    would otherwise render errors too: a 405 page in HTML, an error under the
    OpenAPI media type, and a 500 for OPTIONS (DRF's metadata through the Swagger
    UI template).
    """

    http_method_names = ["get", "head"]

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)  # type: ignore[misc]
        self.request.accepted_renderer = JSONRenderer()  # type: ignore[attr-defined]
        self.request.accepted_media_type = "application/json"  # type: ignore[attr-defined]
        return response


class OpenApiDocumentView(_JsonErrorsMixin, SpectacularJSONAPIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="getOpenApiDocument",
        summary="The OpenAPI document",
        description="This document: OpenAPI 3.1 as JSON (`application/vnd.oai.openapi+json`). Public (no API key).",
        tags=["Documentation"],
        auth=[],
        responses={
            (200, "application/vnd.oai.openapi+json"): OpenApiResponse(
                {"type": "object", "additionalProperties": True}, description="The OpenAPI 3.1 document."
            )
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ApiDocsView(_JsonErrorsMixin, SpectacularSwaggerView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="getApiDocs",
        summary="Interactive API reference",
        description="An HTML page (Swagger UI) rendering this document. Public; no external resources.",
        tags=["Documentation"],
        auth=[],
        responses={(200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="The reference page.")},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
