"""``AsyncApiView`` runs DRF's request cycle once, whichever handler answers.

Authentication, throttling, the Idempotency-Key claim (and its stored outcome)
and error rendering are counted where they happen, for a sync handler, an
async one and a streaming async one (``tests/rivya_api/urls_async_views.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from rivya_api.common import views as common_views
from rivya_api.idempotency import services as idempotency_services
from rivya_api.keys.authentication import APIKeyAuthentication
from rivya_api.keys.throttling import APIKeyRateThrottle
from tests.rivya_api import urls_async_views

pytestmark = [pytest.mark.urls("tests.rivya_api.urls_async_views"), pytest.mark.django_db(transaction=True)]

RATE_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Every step of the request cycle, counted (with the probes' own handler counts)."""
    calls = urls_async_views.calls
    calls.clear()

    def counting(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        APIKeyAuthentication, "authenticate", counting("authenticate", APIKeyAuthentication.authenticate)
    )
    monkeypatch.setattr(APIKeyRateThrottle, "allow_request", counting("throttle", APIKeyRateThrottle.allow_request))
    monkeypatch.setattr(
        idempotency_services, "idempotency_claim", counting("claim", idempotency_services.idempotency_claim)
    )
    monkeypatch.setattr(
        idempotency_services, "idempotency_complete", counting("complete", idempotency_services.idempotency_complete)
    )
    monkeypatch.setattr(common_views, "exception_handler", counting("error rendered", common_views.exception_handler))
    return calls


def assert_rate_limited(response: Any) -> None:
    for name in RATE_HEADERS:
        assert response.has_header(name), (name, dict(response.items()))


@pytest.mark.parametrize(
    ("path", "handler"), [("/api/v1/_test/sync", "sync handler"), ("/api/v1/_test/async", "async handler")]
)
def test_one_request_cycle_and_one_stored_outcome_per_request(api_client, counted, path, handler):
    response = api_client.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="probe-1")
    assert response.status_code == 200, response.content
    assert response.json()["handler"] == handler.split()[0]
    assert_rate_limited(response)
    expected = Counter({"authenticate": 1, "throttle": 1, "claim": 1, "complete": 1, handler: 1})
    if handler == "async handler":
        expected["prepare"] = 1
    assert counted == expected

    counted.clear()
    replay = api_client.post(path, {}, format="json", HTTP_IDEMPOTENCY_KEY="probe-1")
    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == response.content
    assert counted == Counter({"authenticate": 1, "throttle": 1, "claim": 1})  # neither handler nor prepare


@pytest.mark.parametrize(
    ("path", "fail", "handler_calls"),
    [
        ("/api/v1/_test/sync", True, {"sync handler": 1}),
        ("/api/v1/_test/async", "handler", {"prepare": 1, "async handler": 1}),
        ("/api/v1/_test/async", "prepare", {"prepare": 1}),
    ],
)
def test_an_error_is_rendered_once_and_stored_under_the_key(api_client, counted, path, fail, handler_calls):
    response = api_client.post(path, {"fail": fail}, format="json", HTTP_IDEMPOTENCY_KEY=f"probe-{fail}")
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "refused"
    assert_rate_limited(response)
    assert counted == Counter(
        {"authenticate": 1, "throttle": 1, "claim": 1, "error rendered": 1, "complete": 1, **handler_calls}
    )

    counted.clear()
    replay = api_client.post(path, {"fail": fail}, format="json", HTTP_IDEMPOTENCY_KEY=f"probe-{fail}")
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (409, "true")
    assert counted == Counter({"authenticate": 1, "throttle": 1, "claim": 1})


@pytest.mark.parametrize("path", ["/api/v1/_test/sync", "/api/v1/_test/async"])
def test_refusals_before_the_handler_are_the_usual_errors(client, make_api_client, account, counted, path):
    missing = client.post(path, {}, content_type="application/json")
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "missing_api_key")
    assert missing["WWW-Authenticate"]

    no_scope = make_api_client(account, scopes=["chat:read"]).post(path, {}, format="json")
    assert (no_scope.status_code, no_scope.json()["error"]["code"]) == (403, "insufficient_scope")
    assert counted["throttle"] == 0  # DRF checks permissions before throttles
    assert counted["error rendered"] == 2
    assert counted["sync handler"] + counted["async handler"] + counted["prepare"] == 0


def test_a_streaming_async_handler_goes_through_the_cycle_once(account, api_key, counted):
    _, secret = api_key

    async def get() -> tuple[Any, bytes]:
        response = await AsyncClient().get("/api/v1/_test/stream", headers={"Authorization": f"Bearer {secret}"})
        return response, b"".join([chunk async for chunk in response.streaming_content])

    response, body = async_to_sync(get)()
    assert response.status_code == 200
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert_rate_limited(response)
    assert counted == Counter({"authenticate": 1, "throttle": 1, "stream handler": 1})


def test_the_route_is_a_coroutine_function_for_django():
    from asgiref.sync import iscoroutinefunction
    from django.urls import resolve

    for path in ("/api/v1/_test/sync", "/api/v1/_test/stream", "/api/v1/generations", "/api/v1/chat/completions"):
        assert iscoroutinefunction(resolve(path).func), path


DOCUMENTED = [
    ("/api/v1/chat/completions", "post"),
    ("/api/v1/chat/sessions/{session_id}/stream", "get"),
    ("/api/v1/chat/sessions/{session_id}/cancel", "post"),
    ("/api/v1/generations", "get"),
    ("/api/v1/generations", "post"),
    ("/api/v1/generations/{task_id}", "get"),
]


@pytest.mark.parametrize(("path", "method"), DOCUMENTED)
def test_the_documented_operation_is_the_view_that_serves_the_route(path, method):
    """The route's callback is the view's own ``as_view()`` (no function carrying a documented twin's
    attributes), the documented handler is the one that answers, and documenting that view alone gives
    the operation the API's document has."""
    import json
    from pathlib import Path

    from asgiref.sync import iscoroutinefunction
    from django.urls import path as route
    from django.urls import resolve
    from drf_spectacular.generators import SchemaGenerator

    from rivya_api.common.async_views import AsyncDispatch

    callback = resolve(path.replace("{session_id}", "chat_x").replace("{task_id}", "task_x")).func
    view = callback.cls
    assert issubclass(view, AsyncDispatch)
    assert callback.__name__ in ("view", view.__name__)  # what DRF's as_view() builds
    handler = getattr(view, getattr(callback, "actions", {}).get(method, method))
    assert handler.__qualname__.startswith(view.__name__ + ".")  # written on the view, not inherited
    if path.endswith("/stream"):
        assert iscoroutinefunction(handler)

    actions = getattr(callback, "actions", None)
    fresh = view.as_view(actions) if actions else view.as_view()
    document = SchemaGenerator(patterns=[route(path.lstrip("/").replace("{", "<str:").replace("}", ">"), fresh)])
    operation = document.get_schema(request=None, public=True)["paths"][path][method]
    snapshot = json.loads((Path(__file__).parent / "openapi.snapshot.json").read_text())
    assert operation == snapshot["paths"][path][method]
