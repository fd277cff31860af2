"""OpenAPI pieces shared by every resource: the error component and per-status responses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="Broad class, e.g. `invalid_request_error`, `not_found_error`.")
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid_parameter`.")
    message = serializers.CharField(help_text="Human-readable explanation.")
    param = serializers.CharField(allow_null=True, help_text="The offending parameter, if any.")
    request_id = serializers.CharField(help_text="The request's `X-Request-Id`.")


class ErrorSerializer(serializers.Serializer):
    """``{"error": {type, code, message, param, request_id}}`` — every error, every status."""

    error = ErrorDetailSerializer()


_DESCRIPTIONS = {
    400: "The request is invalid; `param` names the offending parameter.",
    401: "Missing, malformed, revoked or expired API key.",
    402: "The wallet cannot cover the reservation.",
    404: "No such object (or it belongs to another account).",
    405: "Method not allowed on this path.",
    409: "The request conflicts with the object's current state.",
    413: "The request body is too large.",
    415: "Unsupported media type (send `application/json`).",
    422: "The Idempotency-Key was used with a different request.",
    429: "Rate limit exceeded; retry after `Retry-After` seconds.",
}


def error_response(status: int, *, code: str = "", message: str = "", param: str | None = None) -> OpenApiResponse:
    examples = []
    if code:
        examples = [
            OpenApiExample(
                code,
                value={
                    "error": {
                        "type": "invalid_request_error" if status == 400 else "api_error",
                        "code": code,
                        "message": message,
                        "param": param,
                        "request_id": "req_8fJ2kQ0aZ1xY7wV3uT5sR9pN",
                    }
                },
                response_only=True,
                status_codes=[str(status)],
            )
        ]
    return OpenApiResponse(ErrorSerializer, description=_DESCRIPTIONS.get(status, "Error."), examples=examples)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """``{status: error response}`` for ``extend_schema(responses=...)``."""
    return {status: error_response(status) for status in statuses}
