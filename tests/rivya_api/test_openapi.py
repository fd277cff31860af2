"""The OpenAPI document: valid, complete, honest about errors, and equal to the committed snapshot.

When a view changes on purpose, regenerate the snapshot with ``make openapi``
and commit it with the change; the diff shows reviewers what the contract did.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern

from tests.openapi import assert_matches_openapi, openapi_document

SNAPSHOT = Path(__file__).with_name("openapi.snapshot.json")
METHODS = ("get", "post", "put", "patch", "delete")
# Operations whose success is not a JSON object (so they carry no JSON example).
NON_JSON = {
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/docs"),
    ("get", "/api/v1/files/{file_id}/content"),
    ("get", "/api/v1/chat/sessions/{session_id}/stream"),  # text/event-stream only
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _api_routes() -> dict[str, set[str]]:
    """``{openapi path: methods}`` of every route the project serves under /api/v1/."""
    routes: dict[str, set[str]] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
                continue
            assert isinstance(pattern, URLPattern)
            if isinstance(pattern.pattern, RegexPattern):
                continue  # the catch-all 404
            route = "/" + prefix + str(pattern.pattern)
            if not route.startswith("/api/v1/"):
                continue
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
            callback = pattern.callback
            actions = getattr(callback, "actions", None)
            if actions:
                # DRF adds "head" to a viewset's actions on its first request; HEAD is implied by GET.
                methods = set(actions) & set(METHODS)
            else:
                view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
                methods = {m for m in METHODS if view_class is not None and hasattr(view_class, m)}
            routes.setdefault(path, set()).update(methods)

    walk(get_resolver().url_patterns, "")
    return routes


def test_spectacular_validates_without_warnings(tmp_path):
    # What CI runs: `manage.py spectacular --validate --fail-on-warn`.
    out = tmp_path / "openapi.json"
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", "--file", str(out))
    assert json.loads(out.read_text())["openapi"].startswith("3.1")


def test_every_api_route_and_method_is_documented(document):
    routes = _api_routes()
    assert "/api/v1/files/{file_id}/content" in routes
    missing = [
        f"{method.upper()} {path}"
        for path, methods in routes.items()
        for method in methods
        if method not in document["paths"].get(path, {})
    ]
    assert missing == []
    # …and nothing is documented that is not served.
    extra = [f"{m.upper()} {p}" for m, p, _ in _operations(document) if m not in routes.get(p, set())]
    assert extra == []


def test_paths_carry_the_full_prefix_and_servers_no_path(document):
    assert all(path.startswith("/api/v1/") for path in document["paths"])
    for server in document.get("servers", []):
        assert server["url"] in ("", "/") or not re.match(r"^(https?://[^/]+)?/.+", server["url"])
    assert "/api/v1/openapi.json" in document["paths"]
    assert "/api/v1/docs" in document["paths"]


def test_bearer_security_scheme(document):
    schemes = document["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    public = {"/api/v1/openapi.json", "/api/v1/docs"}
    for method, path, operation in _operations(document):
        requirements = operation.get("security") or []
        if path in public:
            assert not any(requirements), f"{method} {path} should be public"
        else:
            assert any(requirements), f"{method.upper()} {path} documents no API key"


def test_every_error_status_uses_the_error_schema_and_none_is_default(document):
    for method, path, operation in _operations(document):
        responses = operation["responses"]
        assert "default" not in responses, f"{method.upper()} {path}"
        assert "500" in responses, f"{method.upper()} {path} lacks 500"
        if any(operation.get("security") or []):
            assert {"401", "429"} <= set(responses), f"{method.upper()} {path} lacks 401/429"
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(responses), f"{method.upper()} {path} lacks body errors"
        for status, response in responses.items():
            assert "X-Request-Id" in response.get("headers", {})
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{method.upper()} {path} {status}"
                assert response["content"]["application/json"].get("examples"), f"{method.upper()} {path} {status}"


def test_operations_have_request_and_response_examples(document):
    for method, path, operation in _operations(document):
        assert operation.get("operationId"), f"{method.upper()} {path}"
        if (method, path) in NON_JSON:
            continue
        success = next(r for s, r in operation["responses"].items() if s.startswith("2"))
        content = success.get("content", {}).get("application/json")
        assert content, f"{method.upper()} {path} has no JSON success response"
        assert content.get("examples"), f"{method.upper()} {path} has no response example"
        for media_type, body in (operation.get("requestBody") or {}).get("content", {}).items():
            assert body.get("examples"), f"{method.upper()} {path} has no {media_type} request example"


def test_error_component_is_the_error_shape(document):
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"]
    detail = schemas["ErrorDetail"]
    assert set(detail["properties"]) == {"type", "code", "message", "param", "request_id"}
    assert set(detail["required"]) == {"type", "code", "message", "param", "request_id"}


def test_no_provider_names_in_the_document(document):
    text = json.dumps(document)
    for secret in ("rivya_api.generations", "Provider", "upstream_model", "OpenAIImages", "gpt-image"):
        assert secret not in text


def test_document_matches_the_committed_snapshot(document):
    assert SNAPSHOT.exists(), "no snapshot: run `make openapi` and commit tests/rivya_api/openapi.snapshot.json"
    committed = json.loads(SNAPSHOT.read_text())
    if committed != document:
        changed = sorted(
            f"{m.upper()} {p}"
            for m, p, op in _operations(document)
            if committed.get("paths", {}).get(p, {}).get(m) != op
        )
        removed = sorted(set(committed.get("paths", {})) - set(document["paths"]))
        pytest.fail(
            "The OpenAPI document differs from tests/rivya_api/openapi.snapshot.json "
            f"(changed operations: {changed or 'none'}; removed paths: {removed or 'none'}; "
            "or components changed). If the change is intended, run `make openapi` and commit the snapshot."
        )


def test_document_is_served_publicly_as_json(client, document):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert json.loads(response.content)["paths"].keys() == document["paths"].keys()
    assert_matches_openapi(response, "get", "/api/v1/openapi.json")


def test_interactive_reference_is_served_without_a_cdn(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert references, "the page loads its assets from somewhere"
    for reference in references:
        assert not re.match(r"^(https?:)?//", reference), f"external resource {reference}"
        if reference.startswith("/api/v1/docs?"):  # its start-up script, from the same route (CSP: no inline script)
            script = client.get(reference)
            assert script.status_code == 200
            assert "/api/v1/openapi.json" in script.content.decode()
            continue
        assert reference.startswith("/static/"), reference
        assert finders.find(reference.removeprefix("/static/")), f"{reference} is not a static file here"
    for host in ("cdn.", "unpkg", "jsdelivr", "cloudflare", "googleapis"):
        assert host not in html
    assert "<script>" not in html


@pytest.mark.parametrize("path", ["/api/v1/openapi.json", "/api/v1/docs"])
@pytest.mark.parametrize("method", ["options", "post", "delete"])
def test_document_and_reference_answer_other_methods_with_a_json_405(client, path, method):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"]["code"] == "method_not_allowed"


def _descriptions(node: Any, where: str = "") -> list[tuple[str, str]]:
    """Every ``description`` and ``summary`` in the document, with where it is."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "summary") and isinstance(value, str):
                found.append((where, value))
            found += _descriptions(value, f"{where}/{key}")
    elif isinstance(node, list):
        for value in node:
            found += _descriptions(value, where)
    return found


def test_public_descriptions_speak_of_behaviour_not_server_settings(document):
    """Issue 22 (8): a client cannot read RIVYA_BILLING["ACTIVITY_WINDOW_DAYS"] or tell whether DEBUG is on."""
    setting = re.compile(r"RIVYA_|\bDEBUG\b|\bsettings?\b|\b[A-Z][A-Z0-9]+_[A-Z0-9_]{3,}\b")
    offenders = [(where, text) for where, text in _descriptions(document) if setting.search(text)]
    assert offenders == []
