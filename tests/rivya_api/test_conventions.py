"""The API's conventions: one error shape for every status, request ids, no Django pages."""

from __future__ import annotations

import json

import pytest

from tests.rivya_api import background_probe

pytestmark = [pytest.mark.urls("tests.rivya_api.urls_conventions"), pytest.mark.django_db]

ERROR_KEYS = {"type", "code", "message", "param", "request_id"}


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["request_id"] == response["X-Request-Id"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def test_unknown_route_is_404_in_error_shape(client, debug):
    error = assert_error(client.get("/api/v1/no/such/thing"), 404, "unknown_route")
    assert error["type"] == "not_found_error"


def test_unknown_route_is_404_with_a_bearer_key_too(client, debug):
    response = client.get("/api/v1/nope", HTTP_AUTHORIZATION="Bearer rvya_sk_not_a_real_key")
    assert_error(response, 404, "unknown_route")


def test_trailing_slash_is_not_redirected(client, debug):
    response = client.get("/api/v1/openapi.json/")
    assert_error(response, 404)


def test_wrong_method_is_405(client, debug):
    error = assert_error(client.delete("/api/v1/_test/echo"), 405, "method_not_allowed")
    assert "DELETE" in error["message"]


def test_oversize_body_is_413_before_it_is_read(client, debug, rivya_settings):
    rivya_settings("RIVYA_API", MAX_REQUEST_BYTES=1000)
    response = client.post("/api/v1/_test/echo", data="x" * 2000, content_type="application/json")
    assert_error(response, 413, "request_too_large")


def test_body_over_djangos_memory_limit_is_413_not_400(client, debug, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = json.dumps({"text": "y" * 500})
    response = client.post("/api/v1/_test/echo", data=body, content_type="application/json")
    assert_error(response, 413, "request_too_large")


def test_unsupported_media_type_is_415(client, debug):
    response = client.post("/api/v1/_test/echo", data="hello", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_malformed_json_is_400(client, debug):
    response = client.post("/api/v1/_test/echo", data="{nope", content_type="application/json")
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("path", ["/api/v1/_test/database-down", "/api/v1/_test/database-down-plain"])
def test_database_unavailable_is_503_with_retry_after(client, debug, path):
    error = assert_error(client.get(path), 503, "service_unavailable")
    assert error["type"] == "service_unavailable_error"
    assert "closed" not in error["message"]
    assert "refused" not in error["message"]
    assert int(client.get(path)["Retry-After"]) >= 1


def test_unhandled_exception_is_500_logged_with_request_id(client, debug, caplog):
    response = client.get("/api/v1/_test/boom", HTTP_X_REQUEST_ID="req_trace-me-1")
    error = assert_error(response, 500, "internal_error")
    assert "kaboom" not in error["message"]
    assert error["request_id"] == "req_trace-me-1"
    records = [r for r in caplog.records if r.name == "rivya_api.errors"]
    assert records
    assert records[0].request_id == "req_trace-me-1"
    assert "kaboom" in records[0].exc_text


def test_request_id_is_echoed(client):
    response = client.get("/api/v1/nope", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-Id"] == "abc-123"


def test_request_id_is_generated_and_unsafe_ones_replaced(client):
    generated = client.get("/api/v1/nope")["X-Request-Id"]
    assert generated.startswith("req_")
    assert len(generated) > 20
    replaced = client.get("/api/v1/nope", HTTP_X_REQUEST_ID="evil\r\nvalue<script>")["X-Request-Id"]
    assert replaced.startswith("req_")


def test_request_id_on_non_api_responses(client):
    assert client.get("/healthz")["X-Request-Id"].startswith("req_")


def test_openapi_document_is_public_json(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_process_executor")
def test_in_process_executor_runs_work_after_the_response(client):
    state = background_probe.state
    state["release"].clear()
    state["ran"].clear()
    response = client.post("/api/v1/_test/background")
    assert response.status_code == 202
    # The response is back while the job is still waiting to be released: the
    # work is off the request path, not run eagerly inside it.
    assert not state["ran"].is_set()
    state["release"].set()
    assert state["ran"].wait(10)
    assert state["thread"].startswith("rivya-bg")
