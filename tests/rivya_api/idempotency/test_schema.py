"""The OpenAPI document shows Idempotency-Key and its errors on every idempotent POST."""

from __future__ import annotations

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db
TEST_ROUTES = pytest.mark.urls("tests.rivya_api.idempotency.urls")


@pytest.fixture
def document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def header_names(operation):
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]


@TEST_ROUTES
def test_every_idempotent_post_documents_the_header_and_errors(document):
    validate_schema(document)
    for path in ("/api/v1/_test/widgets", "/api/v1/_test/uploads"):
        operation = document["paths"][path]["post"]
        assert header_names(operation) == ["Idempotency-Key"]
        [parameter] = operation["parameters"]
        assert parameter["schema"]["maxLength"] == 255
        assert parameter["required"] is False
        responses = operation["responses"]
        for status, code in (
            ("400", "idempotency_key_invalid"),
            ("409", "idempotency_key_in_flight"),
            ("422", "idempotency_key_reused"),
        ):
            content = responses[status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}
            name = "".join(part.capitalize() for part in code.split("_"))
            assert content["examples"][name]["value"]["error"]["code"] == code
            assert code in responses[status]["description"]
            assert "X-Request-Id" in responses[status]["headers"]
        assert "Retry-After" in responses["409"]["headers"]
        successes = [r for status, r in responses.items() if status.startswith("2")]
        assert successes
        assert all("Idempotent-Replayed" in r["headers"] for r in successes)
    assert "Error" in document["components"]["schemas"]


@TEST_ROUTES
def test_opted_out_posts_and_other_methods_do_not(document):
    opted_out = document["paths"]["/api/v1/_test/not-idempotent"]["post"]
    assert "Idempotency-Key" not in header_names(opted_out)
    assert "409" not in opted_out["responses"]
    listing = document["paths"]["/api/v1/_test/widgets"]["get"]
    assert "Idempotency-Key" not in header_names(listing)


def test_every_post_of_the_real_api_documents_the_header(document):
    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    assert "/api/v1/files" in posts
    for path, operation in posts.items():
        assert "Idempotency-Key" in header_names(operation), path
        assert {"400", "409", "422"} <= set(operation["responses"]), path
