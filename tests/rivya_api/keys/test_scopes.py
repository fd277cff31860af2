"""Scopes, generated from the OpenAPI document: every operation names its scope, and a key without it is refused.

The document's ``x-rivya-scope`` comes from the views' ``required_scopes`` (the one map the
permission enforces). For every operation in the document, a key holding every scope but that
one gets 403 ``insufficient_scope`` naming it, and a key holding only that scope is not refused
for its scope. A new operation that declares no scope has none in the document and fails here.
"""

from __future__ import annotations

import re

import pytest

from rivya_api.keys.scopes import DEFAULT_SCOPES, SCOPES
from tests.openapi import openapi_document

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "patch", "put", "delete")


def _operations() -> list[tuple[str, str, dict]]:
    document = openapi_document()
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS and any(operation.get("security") or [])
    ]


OPERATIONS = _operations()
# Served by async views in worker threads with their own database connections: the key must be committed.
ASYNC_PATHS = ("/api/v1/chat/sessions/{session_id}/stream",)
SCOPED = [
    pytest.param(
        method,
        path,
        op["x-rivya-scope"],
        op["operationId"],
        id=f"{method.upper()} {path}",
        marks=[pytest.mark.django_db(transaction=True)] if path in ASYNC_PATHS else [],
    )
    for method, path, op in OPERATIONS
    if op.get("x-rivya-scope")
]
# A body that asks for nothing beyond the one scope (a new key's default scopes would be more).
BODIES = {"createKey": {"scopes": []}}


def _call(client, method: str, path: str, operation_id: str = ""):
    url = re.sub(r"\{[^}]+\}", "x_doesnotexist", path)
    if method in ("post", "patch", "put"):
        return getattr(client, method)(url, BODIES.get(operation_id, {}), format="json")
    return getattr(client, method)(url)


def test_every_authenticated_operation_declares_its_scope():
    assert len(OPERATIONS) >= 30
    undeclared = [f"{method.upper()} {path}" for method, path, op in OPERATIONS if "x-rivya-scope" not in op]
    assert undeclared == []
    declared = {param.values[2] for param in SCOPED}
    assert declared <= set(SCOPES)
    assert declared == set(SCOPES)  # every scope guards at least one operation


def test_only_get_key_is_open_to_any_key():
    assert [f"{m.upper()} {p}" for m, p, op in OPERATIONS if op["x-rivya-scope"] is None] == ["GET /api/v1/key"]


@pytest.mark.parametrize(("method", "path", "scope", "operation_id"), SCOPED)
def test_a_key_without_the_scope_is_refused_naming_it(method, path, scope, operation_id, account, make_api_client):
    client = make_api_client(account, scopes=[s for s in SCOPES if s != scope])
    response = _call(client, method, path, operation_id)
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope"
    assert error["type"] == "permission_error"
    assert scope in error["message"]


@pytest.mark.parametrize(("method", "path", "scope", "operation_id"), SCOPED)
def test_a_key_with_only_that_scope_gets_past_the_scope_check(
    method, path, scope, operation_id, account, make_api_client
):
    client = make_api_client(account, scopes=[scope])
    response = _call(client, method, path, operation_id)
    assert response.status_code != 403 or response.json()["error"]["code"] != "insufficient_scope", response.content


def test_a_key_created_without_scopes_has_all_but_the_keys_scopes(account, make_api_key):
    key, _ = make_api_key(account)
    assert key.scopes == list(DEFAULT_SCOPES)
    assert "keys:read" not in key.scopes
    assert "keys:write" not in key.scopes
    assert len(key.scopes) == len(SCOPES) - 2


def test_get_key_works_for_a_key_with_no_scope_at_all(account, make_api_client):
    client = make_api_client(account, scopes=[])
    response = client.get("/api/v1/key")
    assert response.status_code == 200, response.content
    assert response.json()["scopes"] == []
    assert client.get("/api/v1/models").json()["error"]["code"] == "insufficient_scope"


def test_a_method_an_operation_does_not_have_is_405_not_a_scope_question(account, make_api_client):
    client = make_api_client(account, scopes=[])
    assert client.put("/api/v1/keys/key_x", {}, format="json").status_code == 405
    assert client.put("/api/v1/key", {}, format="json").status_code == 405


@pytest.mark.parametrize("path", sorted({path for _, path, _ in OPERATIONS if path not in ASYNC_PATHS}))
def test_options_answers_every_path_for_any_key(path, account, make_api_client):
    """DRF's metadata asks the permissions again for each method it describes (as a viewset's
    "metadata" action); that is not an operation needing a scope, and never a 500."""
    for scopes in ([], None):
        response = make_api_client(account, scopes=scopes).options(re.sub(r"\{[^}]+\}", "x_doesnotexist", path))
        assert response.status_code in (200, 404), (scopes, response.content)


# Operations that name a model: a request for a model outside the key's allow-list, per operation.
MODEL_REQUESTS = {
    "getModel": lambda model: ("get", f"/api/v1/models/{model}", None),
    "createGeneration": lambda model: ("post", "/api/v1/generations", {"model": model, "input": {"prompt": "x"}}),
    "chat_completions_create": lambda model: (
        "post",
        "/api/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": "hi"}]},
    ),
}
MODEL_OPERATIONS = [
    op["operationId"]
    for _, _, op in OPERATIONS
    if "model_not_allowed"
    in (op["responses"].get("403", {}).get("content", {}).get("application/json", {}).get("examples") or {})
]


def test_every_operation_that_names_a_model_documents_model_not_allowed():
    assert sorted(MODEL_OPERATIONS) == sorted(MODEL_REQUESTS)


@pytest.mark.parametrize("operation_id", MODEL_OPERATIONS)
def test_a_model_outside_the_allow_list_is_refused(operation_id, account, make_api_client):
    from rivya_api.catalog.selectors import catalog_models

    models = [model.id for model in catalog_models()]
    allowed, other = models[0], next(m for m in models[1:] if m != models[0])
    client = make_api_client(account, models=[allowed])
    method, path, body = MODEL_REQUESTS[operation_id](other)
    response = getattr(client, method)(path, body, format="json") if body else getattr(client, method)(path)
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_allowed", "model")
    assert other in error["message"]
