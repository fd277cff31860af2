"""One error shape for every status under ``/api/v1/``.

    {"error": {"type", "code", "message", "param", "request_id"}}

``exception_handler`` is DRF's hook; ``error_response`` is used by plain Django
views and middleware (404 catch-all, 413, 500) so both paths render alike.
Domain errors (every ``RivyaError`` the apps raise) are mapped to HTTP here, in
one table (``DOMAIN_ERRORS``), so no service learns about status codes.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from django.core.exceptions import DisallowedHost, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.utils.module_loading import import_string
from rest_framework import exceptions as drf
from rest_framework.response import Response

from rivya_api.common.request_id import current_request_id

logger = logging.getLogger("rivya_api.errors")

# Error "type" by status, in the manner of OpenAI's and Stripe's error types.
TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "conflict_error",
    410: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "service_unavailable_error",
}


class ApiError(drf.APIException):
    """An API error with a stable ``code`` and the offending ``param``."""

    status_code = 400
    default_code = "invalid_request"
    default_detail = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail=message or self.default_detail, code=code or self.default_code)
        self.code = code or self.default_code
        self.param = param
        if status is not None:
            self.status_code = status
        self.headers = headers or {}


class NotFoundError(ApiError):
    status_code = 404
    default_code = "not_found"
    default_detail = "No such object."


class ConflictError(ApiError):
    status_code = 409
    default_code = "conflict"
    default_detail = "The request conflicts with the object's current state."


# No error quotes a client's value at length: whatever built the message, a run of more than
# QUOTED_RUN characters without a space (an id, a token, a value) is cut, and so is the message.
QUOTED_RUN = 200
MAX_MESSAGE_LENGTH = 600
_LONG_RUN = re.compile(r"\S{" + str(QUOTED_RUN + 1) + ",}")


def _bounded(text: str, limit: int) -> str:
    text = _LONG_RUN.sub(lambda match: match.group(0)[:QUOTED_RUN] + "…", text)
    return text if len(text) <= limit else text[:limit] + "…"


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    message = _bounded(message, MAX_MESSAGE_LENGTH)
    if param is not None:
        param = _bounded(param, QUOTED_RUN)
    return {
        "error": {
            "type": TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error"),
            "code": code,
            "message": message,
            "param": param,
            "request_id": current_request_id() or None,
        }
    }


def error_response(
    status: int,
    code: str,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """A plain Django response in the error shape (for code outside DRF views)."""
    response = JsonResponse(error_body(status, code, message, param), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# Every error the apps raise on purpose is a RivyaError and knows nothing of HTTP. This one table
# gives each its status, code and headers; an error not listed here (a subclass inherits its
# parent's row) is a bug and answers 500. Dotted paths keep this module free of import cycles.
def _retry_after(exc: Any) -> dict[str, str]:
    return {"Retry-After": str(getattr(exc, "retry_after", 1))}


def _no_retry(exc: Any) -> dict[str, str]:
    # A 402 that retrying cannot fix: the SDKs read this header.
    return {"x-should-retry": "false"}


DOMAIN_ERRORS: dict[str, tuple[int, str, Any]] = {
    # billing
    "rivya_billing.exceptions.InsufficientCreditsError": (402, "insufficient_credits", _no_retry),
    # A key's credit limit: retrying cannot help until the window resets or the limit is raised.
    "rivya_billing.exceptions.SpendLimitExceededError": (402, "key_credit_limit_reached", _no_retry),
    "rivya_billing.exceptions.SpendLimitError": (400, "invalid_parameter", None),
    # keys
    "rivya_api.keys.scopes.InsufficientScopeError": (403, "insufficient_scope", None),
    "rivya_api.keys.scopes.ModelNotAllowedError": (403, "model_not_allowed", None),
    "rivya_api.keys.exceptions.APIKeyError": (400, "invalid_parameter", None),
    # catalog
    "rivya_api.catalog.exceptions.ModelNotFoundError": (404, "model_not_found", None),
    "rivya_api.catalog.exceptions.InvalidInputError": (400, "invalid_parameter", None),
    "rivya_api.catalog.exceptions.MissingInputError": (400, "missing_parameter", None),
    "rivya_api.catalog.exceptions.UnknownInputError": (400, "unknown_parameter", None),
    # files
    "rivya_api.files.exceptions.NoSuchFileError": (404, "file_not_found", None),
    "rivya_api.files.exceptions.FileDeletedError": (410, "file_deleted", None),
    "rivya_api.files.exceptions.FileUnusableError": (400, "file_unusable", None),
    "rivya_api.files.exceptions.FileTypeMismatchError": (400, "invalid_file_type", None),
    "rivya_api.files.exceptions.UnsupportedFileTypeError": (415, "unsupported_file_type", None),
    "rivya_api.files.exceptions.InvalidMediaError": (415, "invalid_media", None),
    "rivya_api.files.exceptions.ImageTooLargeError": (415, "image_too_large", None),
    "rivya_api.files.exceptions.FileTooLargeError": (413, "file_too_large", None),
    "rivya_api.files.exceptions.InvalidPurposeError": (400, "invalid_parameter", None),
    "rivya_api.files.exceptions.DownloadSignatureError": (403, "invalid_download_signature", None),
    "rivya_api.files.exceptions.DownloadExpiredError": (403, "download_link_expired", None),
    # generations
    "rivya_api.generations.exceptions.ModelNotSupportedError": (400, "model_not_supported", None),
    "rivya_api.generations.exceptions.InputFileNotFoundError": (400, "file_not_found", None),
    "rivya_api.generations.exceptions.InputTooLargeError": (400, "input_too_large", None),
    "rivya_api.generations.exceptions.MaxCreditsExceededError": (402, "max_credits_exceeded", _no_retry),
    "rivya_api.generations.exceptions.GenerationNotFoundError": (404, "generation_not_found", None),
    "rivya_api.generations.exceptions.GenerationNotCancelableError": (409, "generation_not_cancelable", None),
    "rivya_api.generations.exceptions.InvalidGenerationFilterError": (400, "invalid_request", None),
    # chat
    "rivya_api.chat.exceptions.ChatSessionNotFoundError": (404, "session_not_found", None),
    "rivya_api.chat.exceptions.ChatSessionModelMismatchError": (400, "session_model_mismatch", None),
    "rivya_api.chat.exceptions.ChatSessionBusyError": (409, "session_busy", _retry_after),
    "rivya_api.chat.exceptions.ChatContextLengthError": (400, "context_length_exceeded", None),
    "rivya_api.chat.exceptions.ChatCreditsError": (402, "insufficient_credits", _no_retry),
    # webhooks
    "rivya_webhooks.exceptions.InvalidWebhookURLError": (400, "invalid_url", None),
    "rivya_webhooks.exceptions.BlockedDestinationError": (400, "url_not_allowed", None),
    "rivya_webhooks.exceptions.UnresolvableHostError": (400, "url_unresolvable", None),
    "rivya_webhooks.exceptions.UnknownEventTypeError": (400, "unknown_event_type", None),
    "rivya_webhooks.exceptions.PayloadTooLargeError": (400, "payload_too_large", None),
    "rivya_webhooks.exceptions.InvalidParameterError": (400, "invalid_parameter", None),
    "rivya_webhooks.exceptions.EndpointDisabledError": (409, "endpoint_disabled", None),
    "rivya_webhooks.exceptions.NothingToRedeliverError": (409, "nothing_to_redeliver", None),
    # idempotency
    "rivya_api.idempotency.sealing.UnreadableResponseError": (409, "idempotency_key_unreadable", None),
}


@functools.cache
def domain_error_rows() -> dict[type[BaseException], tuple[int, str, Any]]:
    return {import_string(path): row for path, row in DOMAIN_ERRORS.items()}


def domain_error_row(exc: BaseException) -> tuple[int, str, Any] | None:
    """The table's row for ``exc``: its own class's, else its nearest listed ancestor's."""
    rows = domain_error_rows()
    return next((rows[cls] for cls in type(exc).__mro__ if cls in rows), None)


def _first_validation_error(detail: Any, path: str = "") -> tuple[str | None, str, str]:
    """Walk DRF's nested error detail to the first leaf: (param, code, message)."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        if key == "non_field_errors":
            return _first_validation_error(value, path)
        if isinstance(key, int) or str(key).isdigit():  # a list serializer's errors, by index
            return _first_validation_error(value, f"{path}[{key}]")
        return _first_validation_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, dict):
                if value:  # a list serializer reports {} for the valid items
                    return _first_validation_error(value, f"{path}[{index}]")
                continue
            return _first_validation_error(value, path)
    code = getattr(detail, "code", None) or "invalid"
    return (path or None), _validation_code(code), str(detail)


def _validation_code(code: str) -> str:
    return {"invalid": "invalid_parameter", "required": "missing_parameter"}.get(code, code)


def _drf_error(exc: drf.APIException) -> tuple[int, str, str, str | None, dict[str, str]]:
    status = exc.status_code
    headers: dict[str, str] = dict(getattr(exc, "headers", {}) or {})
    if isinstance(exc, ApiError):
        return status, exc.code, str(exc.detail), exc.param, headers
    if isinstance(exc, drf.ValidationError):
        param, code, message = _first_validation_error(exc.detail)
        return status, code, message, param, headers
    if isinstance(exc, drf.Throttled):
        wait = max(1, int(exc.wait or 1))
        headers.setdefault("Retry-After", str(wait))
        return status, "rate_limit_exceeded", "Too many requests; retry after the Retry-After delay.", None, headers
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "invalid_api_key"
        message = str(exc.detail)
        if code == "not_authenticated":
            code, message = "missing_api_key", "No API key provided. Send 'Authorization: Bearer rvya_sk_…'."
        elif code == "authentication_failed":
            code = "invalid_api_key"
        return 401, code, message, None, headers
    code_by_class = {
        drf.MethodNotAllowed: "method_not_allowed",
        drf.UnsupportedMediaType: "unsupported_media_type",
        drf.NotAcceptable: "not_acceptable",
        drf.ParseError: "invalid_json",
        drf.NotFound: "not_found",
        drf.PermissionDenied: "permission_denied",
    }
    code = next((c for k, c in code_by_class.items() if isinstance(exc, k)), None)
    return status, code or str(exc.get_codes()), str(exc.detail), None, headers


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: every known error in the one shape; unknown ones re-raise."""
    status, code, message, param, headers = _classify(exc)
    if status is None:
        return None  # unhandled: the API middleware logs it and answers 500
    response = Response(error_body(status, code, message, param), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _classify(exc: BaseException) -> tuple[Any, str, str, str | None, dict[str, str]]:
    row = domain_error_row(exc)
    if row is not None:
        status, code, headers = row
        return status, code, str(exc), getattr(exc, "param", None), headers(exc) if headers else {}
    if isinstance(exc, drf.APIException):
        return _drf_error(exc)
    if isinstance(exc, Http404):
        return 404, "not_found", "No such object.", None, {}
    if isinstance(exc, PermissionDenied):
        return 403, "permission_denied", "You cannot perform this action.", None, {}
    if isinstance(exc, RequestDataTooBig):
        return 413, "request_too_large", "The request body is too large.", None, {}
    if isinstance(exc, DisallowedHost):
        return 400, "invalid_host", "The Host header is not a name this server answers to.", "Host", {}
    if isinstance(exc, SuspiciousOperation):  # too many fields or files, a malformed upload, …
        return 400, "invalid_request", "The request cannot be read.", None, {}
    if _is_unavailable(exc):
        logger.warning("Answering 503: a backing service is unavailable (%s: %s)", type(exc).__name__, exc)
        message = "The service is temporarily unavailable; retry after the Retry-After delay."
        return 503, "service_unavailable", message, None, {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
    return None, "", "", None, {}


# Seconds a client is asked to wait after a 503 (a database restart takes a few).
UNAVAILABLE_RETRY_AFTER = 5


def _is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or dropped the connection (restart, failover, pool exhausted),
    or the broker cannot be reached: a transient condition of the service, not a bug, so the client
    gets a 503 it may retry instead of a 500."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    try:
        from kombu.exceptions import OperationalError as BrokerOperationalError
    except ImportError:  # pragma: no cover - celery is a dependency of the project
        return False
    return isinstance(exc, BrokerOperationalError)


def response_for_exception(exc: BaseException) -> JsonResponse:
    """Render any exception under /api/v1/ (used by the API middleware)."""
    status, code, message, param, headers = _classify(exc)
    if status is None:
        logger.error("Unhandled error in API request", exc_info=exc)
        message = "An internal error occurred. Quote the request id if you contact support."
        return error_response(500, "internal_error", message)
    return error_response(status, code, message, param, headers)
