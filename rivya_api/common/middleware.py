"""Middleware for the API's conventions.

``RequestIdMiddleware`` gives every response (API or not) an ``X-Request-Id``,
writes the ``rivya.access`` line (request id, route, status, duration, and for
authenticated API calls the account and the key's public id and display
prefix, never a secret) and records the request in the Prometheus metrics.
``ApiErrorMiddleware`` makes sure nothing under the API answers with Django's
own pages: any exception a view lets through becomes the error shape (500 is
logged with the request id). Oversize bodies and other hostile input never get
this far (``rivya_api.common.gate``). Both work sync and async, so streaming views stay on the event loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from rivya_api import metrics
from rivya_api.common import request_id
from rivya_api.common.auth import ApiPrincipal
from rivya_api.common.errors import response_for_exception

API_NAMESPACE = "rivya_api"
# One line per request with its id, since the ASGI server's access log has none.
access_logger = logging.getLogger("rivya.access")


class _HybridMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)


class RequestIdMiddleware(_HybridMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        token = self._begin(request)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset_current_request_id(token)
        return self._finish(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        token = self._begin(request)
        try:
            response = await self.get_response(request)
        finally:
            request_id.reset_current_request_id(token)
        return self._finish(request, response)

    @staticmethod
    def _begin(request: HttpRequest) -> Any:
        request.request_id = request_id.request_id_from_header(request.headers.get("X-Request-Id"))
        request.started_at = time.monotonic()
        return request_id.set_current_request_id(request.request_id)

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response["X-Request-Id"] = request.request_id
        seconds = time.monotonic() - request.started_at
        route = metrics.request_route(request)
        fields: dict[str, Any] = {
            "request_id": request.request_id,
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 1),
            **principal_log_fields(request),
        }
        access_logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status_code, seconds * 1000, extra=fields
        )
        metrics.http_request_observe(
            method=request.method or "", route=route, status=response.status_code, seconds=seconds
        )
        return response


def principal_log_fields(request: HttpRequest) -> dict[str, Any]:
    """``account``, ``api_key`` and ``api_key_prefix`` of an API-key request, else nothing.

    DRF puts the ``ApiPrincipal`` on the Django request when it authenticates. The
    check looks at the attribute's type only: ``isinstance`` would evaluate the
    session user ``AuthenticationMiddleware`` leaves there lazily (a query).
    """
    principal = request.__dict__.get("user")
    if not issubclass(type(principal), ApiPrincipal):
        return {}
    account, key = principal.account, principal.api_key
    return {
        "account": str(getattr(account, "public_id", None) or account.pk),
        "api_key": getattr(key, "public_id", None),
        "api_key_prefix": getattr(key, "prefix", None),
    }


def is_api_request(request: HttpRequest) -> bool:
    match = getattr(request, "resolver_match", None)
    return bool(match and API_NAMESPACE in match.namespaces)


class ApiErrorMiddleware(_HybridMiddleware):
    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_request(request):
            return None
        return response_for_exception(exception)
