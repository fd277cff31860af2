"""drf-spectacular: document ``APIKeyAuthentication`` as HTTP bearer security."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "rivya_api.keys.authentication.APIKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "rvya_sk_…",
            "description": "An API key from Settings → API keys: `Authorization: Bearer rvya_sk_…`.",
        }
