"""Check real responses against the OpenAPI document (any suite may use it).

    from tests.openapi import assert_matches_openapi
    response = api_client.get("/api/v1/files")
    assert_matches_openapi(response, "get", "/api/v1/files")

The response's status must be declared for the operation (no ``default``
fallback), its content type must be one the document lists, and a JSON body
must validate against the declared schema (OpenAPI 3.1 schemas are JSON Schema
2020-12, so ``jsonschema`` validates them; ``$ref``s resolve inside the document).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
from drf_spectacular.generators import SchemaGenerator


@cache
def _document_json() -> str:
    return json.dumps(SchemaGenerator().get_schema(request=None, public=True))


def openapi_document() -> dict[str, Any]:
    """The document as ``manage.py spectacular`` writes it (a fresh copy)."""
    return json.loads(_document_json())


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def assert_matches_openapi(response: Any, method: str, path: str, document: dict[str, Any] | None = None) -> None:
    document = document or openapi_document()
    assert path in document["paths"], f"{path} is not in the OpenAPI document"
    operation = document["paths"][path].get(method.lower())
    assert operation is not None, f"{method.upper()} {path} is not in the OpenAPI document"
    status = str(response.status_code)
    assert status in operation["responses"], f"{method.upper()} {path} does not declare {status}"
    declared = operation["responses"][status].get("content") or {}
    content_type = (response.get("Content-Type") or "").split(";")[0].strip()
    if not declared:
        return
    assert content_type in declared, f"{content_type} is not declared for {status}"
    if content_type != "application/json":
        return
    schema = {
        **document,
        "$ref": _pointer("paths", path, method.lower(), "responses", status, "content", content_type, "schema"),
    }
    body = json.loads(response.content)
    jsonschema.Draft202012Validator(schema).validate(body)
