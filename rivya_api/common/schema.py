"""OpenAPI pieces shared by the API's operations: the one error shape as a component."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="Error family, e.g. `invalid_request_error`, `billing_error`.")
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `insufficient_credits`.")
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True, help_text="The request parameter at fault, if any.")
    request_id = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """``{"error": {...}}``: every error of the API, whatever the status."""

    error = ErrorDetailSerializer()


def error_response(description: str) -> OpenApiResponse:
    """An OpenAPI response in the error shape."""
    return OpenApiResponse(response=ErrorSerializer, description=description)
