"""Strict, consistent input (issue 21, items 2 and 4): bounded metadata and user data, no unknown
fields and no values of another type, in JSON POSTs, PATCHes and multipart forms alike."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from rivya_api.generations import services
from rivya_api.generations.models import GenerationTask
from rivya_billing.services import credits_grant
from tests import media
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.rivya_webhooks.support import PUBLIC_IP, StaticResolver

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.rivya_settings(
        {
            "RIVYA_API": {"MODELS": GENERATION_MODELS},
            "RIVYA_WEBHOOKS": {"RESOLVER": StaticResolver({"hooks.example.com": [PUBLIC_IP]})},
        }
    ),
]


@pytest.fixture
def funded(account):
    credits_grant(account=account, amount=1000, reference="grant")
    return account


def refused(response, code: str, param: str | None = None) -> dict:
    assert response.status_code == 400, response.content[:400]
    error = response.json()["error"]
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def submit(client, **body):
    return client.post("/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}, **body}, format="json")


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(17)},
        {"k" * 41: "v"},
        {"k" * 300_000: "v"},
        {"": "v"},
        {"order": "v" * 501},
    ],
    ids=["17 keys", "41-character key", "300,000-character key", "empty key", "501-character value"],
)
def test_metadata_is_bounded(api_client, funded, metadata):
    response = submit(api_client, metadata=metadata)
    assert response.status_code == 400, response.content[:400]
    error = response.json()["error"]
    assert error["code"] in ("invalid_parameter", "max_length")
    assert error["param"].startswith("metadata")
    assert len(error["message"]) < 400
    assert not GenerationTask.objects.exists()


def test_metadata_at_its_limits_is_accepted(api_client, funded):
    metadata = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(16)}
    assert submit(api_client, metadata=metadata).status_code == 202


def test_metadata_values_must_be_strings(api_client, funded):
    refused(submit(api_client, metadata={"order": 42}), "invalid_type", "metadata")


def test_input_and_metadata_too_large_for_an_event_are_refused_at_submission(api_client, funded):
    # test-failing's schema sets no maxLength: only the user-data bound stands between it and the payload limit.
    response = api_client.post(
        "/api/v1/generations", {"model": "test-failing", "input": {"prompt": "é" * 40_000}}, format="json"
    )
    error = refused(response, "input_too_large", "input")
    assert "80" in error["message"]  # 40,000 two-byte characters
    assert not GenerationTask.objects.exists()


def test_the_user_data_bound_must_fit_the_payload_limit(settings):
    settings.RIVYA_API = {**settings.RIVYA_API, "GENERATION_USER_DATA_MAX_BYTES": 250 * 1024}
    with pytest.raises(SystemCheckError, match="rivya_api.E003"):
        call_command("check")


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_credits", "5"), ("max_credits", True), ("max_credits", 5.5), ("dry_run", "true"), ("dry_run", 1),
     ("model", 5)],
)  # fmt: skip
def test_json_fields_of_the_wrong_type_are_refused(api_client, funded, field, value):
    refused(submit(api_client, **{field: value}), "invalid_type", field)


def test_an_integral_float_is_run_as_that_integer(api_client, funded):
    assert submit(api_client, max_credits=10.0, dry_run=True).status_code == 200
    response = api_client.post(
        "/api/v1/generations",
        {"model": "test-video", "input": {"prompt": "x", "fps": 8.0, "duration": 1, "width": 64, "height": 64}},
        format="json",
    )
    assert response.status_code == 202, response.content
    assert response.json()["input"]["fps"] == 8
    task = GenerationTask.objects.get()
    assert type(task.input["fps"]) is int
    services.generation_run(task_pk=task.pk)
    task.refresh_from_db()
    assert task.status == "succeeded", (task.error_code, task.error_message)


def test_a_multipart_upload_refuses_unknown_fields(api_client, funded):
    upload = SimpleUploadedFile("ref.png", media.png(), content_type="image/png")
    response = api_client.post("/api/v1/files", {"file": upload, "purpose": "reference", "bogus": "1"},
                               format="multipart")  # fmt: skip
    refused(response, "unknown_parameter", "bogus")


@pytest.fixture
def endpoint_id(api_client):
    response = api_client.post(
        "/api/v1/webhooks", {"url": "https://hooks.example.com/x", "event_types": ["*"]}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"bogus": 1}, "unknown_parameter", "bogus"),
        ({"enabled": "true"}, "invalid_type", "enabled"),
        ({"enabled": 1}, "invalid_type", "enabled"),
        ({"description": 5}, "invalid_type", "description"),
        ({"event_types": "generation.failed"}, "invalid_type", "event_types"),
        ({"event_types": [5]}, "invalid_type", "event_types"),
    ],
)
def test_a_patch_is_as_strict_as_a_post(api_client, endpoint_id, body, code, param):
    refused(api_client.patch(f"/api/v1/webhooks/{endpoint_id}", body, format="json"), code, param)


def test_webhook_creation_refuses_unknown_fields(api_client):
    body = {"url": "https://hooks.example.com/x", "event_types": ["*"], "secret": "whsec_mine"}
    refused(api_client.post("/api/v1/webhooks", body, format="json"), "unknown_parameter", "secret")


def test_chat_refuses_a_string_for_an_integer(api_client, funded):
    body = {"model": "rivya-chat-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}
    refused(api_client.post("/api/v1/chat/completions", body, format="json"), "invalid_type", "max_tokens")
