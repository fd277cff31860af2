"""The hostile-input gate: one middleware that refuses what no view, parser or query should see.

``RequestGateMiddleware`` runs right after ``RequestIdMiddleware``, before any
other middleware reads the request, and checks, in this order:

1. the path: a NUL or undecodable byte in it is a 404 (no id can contain one);
2. under the API: the ``Host`` header (a 400 in the error shape, not Django's
   HTML page) and ``Content-Length`` (400 unreadable, 413 over
   ``MAX_REQUEST_BYTES``, before the body is read);
3. the query string: every name and value must be UTF-8 without NUL (400);
4. the body: a JSON body under the API is parsed once, under the rules of
   ``rivya_api.common.hostile`` (depth, NUL, surrogates, number range), and kept
   on the request as ``rivya_json`` for DRF's parser, the Idempotency-Key
   fingerprint and the chat views; form and multipart fields (and file names)
   must be free of NUL, on every page.

Refusals under the API are in the error shape, naming the parameter; elsewhere
they are Django's own 400 and 404 pages. A 500 is never the answer to input.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import Resolver404
from django.views import defaults

from rivya_api.common import hostile, resolve_once
from rivya_api.common.errors import ApiError, error_response
from rivya_api.conf import api_settings

API_NAMESPACE = "rivya_api"
# Bodies larger than this are checked in a thread rather than on the event loop.
_INLINE_BODY_BYTES = 256 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestGateMiddleware:
    """Refuses hostile paths, hosts, sizes, query strings and bodies (see the module docstring)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return request_refusal(request) or self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        if _declared_length(request) > _INLINE_BODY_BYTES:
            refusal = await sync_to_async(request_refusal, thread_sensitive=False)(request)
        else:
            refusal = request_refusal(request)
        return refusal or await self.get_response(request)


def is_api_request_path(request: HttpRequest) -> bool:
    """Whether the request's path is routed to the public API (whatever prefix the host mounted it
    under); the match is kept for Django's handler (``resolve_once``)."""
    try:
        return API_NAMESPACE in resolve_once.resolve_request_path(request).namespaces
    except Resolver404:
        return False


def request_refusal(request: HttpRequest) -> HttpResponse | None:
    """The response refusing ``request``, or None to let it through."""
    api = is_api_request_path(request)
    try:
        _check_path(request)
        if api:
            _check_host(request)
            _check_length(request)
        _check_query(request)
        _check_body(request, api=api)
    except ApiError as exc:
        return _render(request, exc, api=api)
    return None


def _render(request: HttpRequest, exc: ApiError, *, api: bool) -> HttpResponse:
    if api:
        return error_response(exc.status_code, exc.code, str(exc.detail), exc.param, exc.headers)
    if exc.status_code == 404:
        return defaults.page_not_found(request, Http404(str(exc.detail)))
    response = defaults.bad_request(request, SuspiciousOperation(str(exc.detail)))
    response.status_code = exc.status_code
    return response


def _check_path(request: HttpRequest) -> None:
    # Servers decode the path; bytes that are not UTF-8 become U+FFFD (ASGI) or stay %-escaped (WSGI).
    path = request.path_info
    if "\x00" in path or "\ufffd" in path:
        raise ApiError("No such route or object.", code="not_found", status=404)


def _check_host(request: HttpRequest) -> None:
    try:
        request.get_host()
    except DisallowedHost:
        host = request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME", "")
        raise ApiError(
            f"The Host header {hostile.quote(host, 100)} is not a name this server answers to.",
            code="invalid_host",
            param="Host",
        ) from None


def _declared_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


def _check_length(request: HttpRequest) -> None:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        raise ApiError("Content-Length is not a number.", code="invalid_content_length") from None
    if length < 0:
        raise ApiError("Content-Length is negative.", code="invalid_content_length")
    limit = int(api_settings.MAX_REQUEST_BYTES)
    if length > limit:
        raise ApiError(f"The request body is larger than {limit} bytes.", code="request_too_large", status=413)


def _check_query(request: HttpRequest) -> None:
    raw = request.META.get("QUERY_STRING", "")
    if not raw:
        return
    pairs = [pair for pair in raw.split("&") if pair]
    if len(pairs) > (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS or len(pairs)):
        raise ApiError("The query string has too many parameters.", code="invalid_query")
    for pair in pairs:
        name, _, value = pair.partition("=")
        name_text = _query_text(name, param=None)
        _query_text(value, param=hostile.label(name_text) if name_text else None)


def _query_text(raw: str, *, param: str | None) -> str:
    try:
        text = unquote_to_bytes(raw.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        where = f"The query parameter {param}" if param else "A query parameter name"
        raise ApiError(f"{where} is not valid UTF-8.", code="invalid_string", param=param) from None
    hostile.check_text(text, param=param or "query string")
    return text


def _check_body(request: HttpRequest, *, api: bool) -> None:
    if request.method not in _BODY_METHODS:
        return
    content_type = (request.content_type or "").lower()
    try:
        if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            _check_form(request)
        elif api and (content_type == "application/json" or content_type.endswith("+json")):
            body = request.body
            if body.strip():
                request.rivya_json = hostile.json_loads(body)
    except RequestDataTooBig:
        raise ApiError("The request body is too large.", code="request_too_large", status=413) from None
    except MultiPartParserError as exc:
        raise ApiError(f"The multipart body cannot be read ({exc}).", code="invalid_multipart") from None
    except SuspiciousOperation as exc:  # too many fields or files
        raise ApiError(f"The form cannot be read ({exc}).", code="invalid_form") from None


def _check_form(request: HttpRequest) -> None:
    for name, values in request.POST.lists():
        hostile.check_text(name, param=hostile.label(name))
        for value in values:
            hostile.check_text(value, param=hostile.label(name))
    for name, uploads in request.FILES.lists():
        hostile.check_text(name, param=hostile.label(name))
        for upload in uploads:
            hostile.check_text(upload.name or "", param=hostile.label(name))
