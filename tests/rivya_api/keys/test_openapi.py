"""The OpenAPI document shows API-key authentication as HTTP bearer security."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.mark.urls("tests.rivya_api.keys.urls")
def test_authenticated_operations_require_the_bearer_scheme():
    schema = SchemaGenerator(urlconf="tests.rivya_api.keys.urls").get_schema(request=None, public=True)
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "rvya_sk_…",
        "description": "An API key from Settings → API keys: `Authorization: Bearer rvya_sk_…`.",
    }
    operation = schema["paths"]["/api/v1/_test/whoami"]["get"]
    assert operation["security"] == [{"ApiKeyAuth": []}]
