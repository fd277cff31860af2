"""Views shared by the API: the catch-all 404, the API's own DRF configuration, the base of every authenticated view.

Every API view carries its DRF configuration itself (``ApiViewDefaults``) instead of
reading the project's global ``REST_FRAMEWORK``: a host keeps its own defaults for its
own DRF views, and the API keeps its error shape, JSON-only answers and OpenAPI
document whatever those defaults are.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.metadata import SimpleMetadata
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer

from rivya_api.common.auth import HasAccount, request_account
from rivya_api.common.errors import error_response, exception_handler
from rivya_api.common.hostile import quote
from rivya_api.common.negotiation import JSONContentNegotiation
from rivya_api.common.parsers import JSONParser
from rivya_api.common.ratelimit import apply_rate_limit_headers, rate_limited_error
from rivya_api.common.schema import RivyaAutoSchema
from rivya_api.conf import api_settings
from rivya_api.idempotency.mixins import IdempotencyMixin
from rivya_api.keys import onetrip
from rivya_api.keys.limits import key_limit_refused
from rivya_api.keys.scopes import HasScope
from rivya_billing.exceptions import SpendLimitExceededError


@csrf_exempt
def unknown_route(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Every unmatched path under the API: a 404 in the error shape, whatever the method or key."""
    return error_response(404, "unknown_route", f"No route matches {request.method} {quote(request.path)}.")


class ApiViewDefaults:
    """What DRF would otherwise read from ``REST_FRAMEWORK``, set on the view (put it first in the bases).

    Authentication, permissions and throttles are empty here; ``AccountScopedMixin``
    supplies the API-key ones from ``RIVYA_API``. ``schema`` is drf-spectacular's, whatever
    ``DEFAULT_SCHEMA_CLASS`` the host names (``extend_schema`` subclasses the view's own).
    """

    rivya_api_view = True  # in the API's OpenAPI document (rivya_api.common.schema.preprocess_rivya_endpoints)
    renderer_classes: list[Any] = [JSONRenderer]
    parser_classes: list[Any] = [JSONParser, MultiPartParser]
    content_negotiation_class: Any = JSONContentNegotiation
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []
    metadata_class: Any = SimpleMetadata
    versioning_class: Any = None
    pagination_class: Any = None
    filter_backends: list[Any] = []
    schema = RivyaAutoSchema()

    def get_exception_handler(self) -> Any:
        return exception_handler


class AccountScopedMixin(ApiViewDefaults, IdempotencyMixin):
    """Base for every authenticated API view or viewset.

    API-key authentication and per-key throttles come from ``RIVYA_API``
    settings (read per request so overrides apply); ``self.account`` is the
    account the request acts as. Querysets must be filtered by it, so another
    account's object is a 404, never a 403. Every authenticated response
    carries the ``x-ratelimit-*-requests`` headers the throttle recorded, and a
    throttled request is a 429 with ``Retry-After`` and ``retry-after-ms``.

    Every POST honours ``Idempotency-Key`` (``IdempotencyMixin``); set
    ``idempotency_enabled = False`` on a view that must not.
    """

    def get_authenticators(self) -> list[Any]:
        return [cls() for cls in api_settings.AUTHENTICATION_CLASSES]

    # The scope each operation needs, by action (viewsets) or HTTP method (APIViews); see
    # ``rivya_api.keys.scopes``. Every subclass declares it; an undeclared operation is refused.
    required_scopes: dict[str, str | None] | None = None

    def get_permissions(self) -> list[Any]:
        return [HasAccount(), HasScope()]

    def get_throttles(self) -> list[Any]:
        return [cls() for cls in api_settings.THROTTLE_CLASSES]

    @property
    def account(self) -> Any:
        return request_account(self.request)

    def check_throttles(self, request: Any) -> None:
        super().check_throttles(request)  # type: ignore[misc]
        onetrip.release_unused(request)  # a count authentication took that no throttle took (rate changed)

    def handle_exception(self, exc: Exception) -> Any:
        # Refused (or failed, even with an uncaught error) before the throttle took authentication's
        # count: give it back here, where the async dispatch runs in a worker thread, not in
        # finalize_response, which it calls on the event loop and which an uncaught error skips.
        onetrip.release_unused(getattr(self, "request", None))
        if isinstance(exc, SpendLimitExceededError):
            key_limit_refused(exc)  # the refused work has rolled back: announce the limit once per window
        return super().handle_exception(exc)  # type: ignore[misc]

    def throttled(self, request: Any, wait: float | None) -> None:
        raise rate_limited_error(wait)

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        return apply_rate_limit_headers(request, response)
