"""The API's own document and its interactive reference, both public.

Thin subclasses of drf-spectacular's views, so that both routes appear in the
document itself with clean operation ids (the document lists every
``/api/v1/`` route, its own included) and the reference page is served from
drf-spectacular-sidecar's static files, never a CDN.

Both apply ``rivya_api.openapi_settings`` themselves, so the document does not
depend on the host's ``SPECTACULAR_SETTINGS`` or ``REST_FRAMEWORK``. drf-spectacular
patches its settings object for the duration of a request (process-wide), so the
two views take one lock while they are patched, and clear its enum-name cache,
which is keyed by language only, before and after.
"""

from __future__ import annotations

import threading
from typing import Any

from csp.decorators import csp_update
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import _load_enum_name_overrides
from drf_spectacular.settings import patched_settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerSplitView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from rivya_api.common.errors import exception_handler
from rivya_api.common.negotiation import JSONContentNegotiation
from rivya_api.common.schema import (
    extend_schema,  # drf-spectacular's, on its AutoSchema whatever the host's DEFAULT_SCHEMA_CLASS
)
from rivya_api.openapi_settings import SPECTACULAR_SETTINGS

_settings_lock = threading.RLock()


class _JsonErrorsMixin:
    """GET and HEAD only; every error in the API's JSON error shape.

    These views render their success with a document or HTML renderer, which
    would otherwise render errors too: a 405 page in HTML, an error under the
    OpenAPI media type, and a 500 for OPTIONS (DRF's metadata through the Swagger
    UI template).
    """

    http_method_names = ["get", "head"]
    rivya_api_view = True
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    versioning_class: Any = None
    content_negotiation_class: Any = JSONContentNegotiation  # the view's one renderer, whatever Accept says
    schema = AutoSchema()

    def get_exception_handler(self) -> Any:
        return exception_handler

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        with _settings_lock, patched_settings(SPECTACULAR_SETTINGS):
            _load_enum_name_overrides.cache_clear()
            try:
                response = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
                if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                    response.render()  # the Swagger page reads the settings while it renders
                return response
            finally:
                _load_enum_name_overrides.cache_clear()

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)  # type: ignore[misc]
        self.request.accepted_renderer = JSONRenderer()  # type: ignore[attr-defined]
        self.request.accepted_media_type = "application/json"  # type: ignore[attr-defined]
        return response


class OpenApiDocumentView(_JsonErrorsMixin, SpectacularJSONAPIView):
    serve_public = True
    urlconf = None  # the project's URLconf; the preprocessing hook keeps Rivya's own operations

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


class ApiDocsView(_JsonErrorsMixin, SpectacularSwaggerSplitView):
    """Swagger UI, its start-up script served from this same route (``?script=``) rather than
    inlined, so the page runs under a script-src 'self' policy."""

    title = SPECTACULAR_SETTINGS["TITLE"]

    @extend_schema(
        operation_id="getApiDocs",
        summary="Interactive API reference",
        description="An HTML page (Swagger UI) rendering this document. Public; no external resources.",
        tags=["Documentation"],
        auth=[],
        responses={(200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="The reference page.")},
    )
    # Swagger UI's page carries a small <style> block, and its icons are data: images.
    @csp_update({"style-src": ["'unsafe-inline'"], "img-src": ["data:"]})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
