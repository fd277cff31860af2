"""The chat operations in the OpenAPI document, checked against real responses.

A schema-driven tester reads the ``text/event-stream`` schema (each event an
object whose ``data`` is ``[DONE]`` or JSON of the chunk schema, by
``contentMediaType`` + ``contentSchema``) and validates a real stream with it;
this test does exactly that, decoding ``contentSchema`` itself since JSON
Schema validators treat it as an annotation.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def openapi(live_server_url) -> dict:
    return httpx.get(f"{live_server_url}/api/v1/openapi.json").json()


def validator(document: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """Validates against ``schema``, resolving its ``#/components/…`` references in ``document``."""
    contents = {**document, "x-under-test": schema}
    registry = Registry().with_resource("urn:openapi", Resource(contents=contents, specification=DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": "urn:openapi#/x-under-test"}, registry=registry)


def test_completions_documents_json_and_event_stream_and_every_error(openapi):
    operation = openapi["paths"]["/api/v1/chat/completions"]["post"]
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"400", "401", "402", "404", "409", "429", "500", "502", "503", "504"} <= set(operation["responses"])
    assert "default" not in operation["responses"]
    for path in (
        "/api/v1/chat/sessions",
        "/api/v1/chat/sessions/{session_id}",
        "/api/v1/chat/sessions/{session_id}/stream",
    ):
        assert "get" in openapi["paths"][path]
    assert "post" in openapi["paths"]["/api/v1/chat/sessions/{session_id}/cancel"]


def test_a_real_stream_validates_against_the_documented_event_schema(openapi, live_server_url, funded):
    _, secret = funded()
    operation = openapi["paths"]["/api/v1/chat/completions"]["post"]
    stream_schema = operation["responses"]["200"]["content"]["text/event-stream"]["schema"]
    event_validator = validator(openapi, stream_schema)
    response = httpx.post(
        f"{live_server_url}/api/v1/chat/completions",
        json={"model": "rivya-chat-1", "messages": [{"role": "user", "content": "validate me"}], "stream": True},
        headers={"Authorization": f"Bearer {secret}"},
    )
    events, current = [], {}
    for line in response.text.splitlines():
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("data: "):
            current["data"] = line[6:]
        elif line == "" and current:
            events.append(current)
            current = {}
    assert len(events) > 3
    branches = stream_schema["properties"]["data"]["anyOf"]
    for event in events:
        event_validator.validate(event)
        if event["data"] == "[DONE]":
            continue
        payload = json.loads(event["data"])
        matching = [
            branch
            for branch in branches
            if "contentSchema" in branch and validator(openapi, branch["contentSchema"]).is_valid(payload)
        ]
        assert matching, f"event {event['id']} matches no documented content schema"
    assert events[-1]["data"] == "[DONE]"

    completion = httpx.post(
        f"{live_server_url}/api/v1/chat/completions",
        json={"model": "rivya-chat-1", "messages": [{"role": "user", "content": "validate me"}]},
        headers={"Authorization": f"Bearer {secret}"},
    ).json()
    json_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    validator(openapi, json_schema).validate(completion)
