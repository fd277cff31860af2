"""The generations HTTP API: submission, polling, listing, cancel, and every kind of bad input."""

from __future__ import annotations

import pytest

from rivya_api.files.services import file_create
from rivya_api.generations import services
from rivya_api.generations.models import GenerationTask
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from tests import media
from tests.openapi import assert_matches_openapi
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]


@pytest.fixture
def funded(account):
    credits_grant(account=account, amount=50, reference="grant")
    return account


def submit(client, **body):
    return client.post("/api/v1/generations", body, format="json")


def error(response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code
    if param is not None:
        assert body["param"] == param
    return body


def test_submit_answers_202_with_the_task(api_client, funded):
    response = submit(api_client, model="test-image", input={"prompt": "a lighthouse"}, metadata={"order": "42"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"].startswith("task_")
    assert body["object"] == "generation"
    assert body["status"] == "queued"
    assert body["credits"] == {"reserved": 4, "charged": 0, "released": 0, "refunded": 0}
    assert body["metadata"] == {"order": "42"}
    assert response["Location"].endswith(body["id"])
    assert_matches_openapi(response, "post", "/api/v1/generations")
    assert wallet_get(account=funded).held == 4


def test_get_shows_outputs_with_signed_urls_after_success(api_client, funded):
    task_id = submit(api_client, model="test-image", input={"prompt": "a lighthouse"}).json()["id"]
    services.generation_run(task_pk=GenerationTask.objects.get(public_id=task_id).pk)
    response = api_client.get(f"/api/v1/generations/{task_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["progress"] == 100
    assert body["credits"] == {"reserved": 4, "charged": 4, "released": 0, "refunded": 0}
    url = body["outputs"][0]["url"]
    assert url.startswith("http://testserver/api/v1/files/")
    assert_matches_openapi(response, "get", "/api/v1/generations/{task_id}")
    download = api_client.__class__().get(url)  # no key: the signature is enough
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"\x89PNG")


def test_dry_run_prices_and_creates_nothing(api_client, funded):
    response = submit(api_client, model="test-video", input={"prompt": "waves"}, dry_run=True)
    assert response.status_code == 200
    assert response.json()["price"] == 6
    assert not GenerationTask.objects.exists()
    assert wallet_get(account=funded).held == 0


def test_list_is_paginated_and_filtered(api_client, funded):
    ids = [submit(api_client, model="test-image", input={"prompt": f"p{i}"}).json()["id"] for i in range(3)]
    submit(api_client, model="test-audio", input={"prompt": "hello"})
    page = api_client.get("/api/v1/generations?model=test-image&limit=2").json()
    assert [item["id"] for item in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    rest = api_client.get(f"/api/v1/generations?model=test-image&limit=2&after={page['next_cursor']}").json()
    assert [item["id"] for item in rest["data"]] == [ids[0]]
    assert api_client.get("/api/v1/generations?status=succeeded").json()["data"] == []
    error(api_client.get("/api/v1/generations?status=bogus"), 400, "invalid_request", "status")


def test_cancel_queued_then_cancel_again_is_409(api_client, funded):
    task_id = submit(api_client, model="test-image", input={"prompt": "x"}).json()["id"]
    response = api_client.post(f"/api/v1/generations/{task_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert response.json()["credits"]["released"] == 4
    error(api_client.post(f"/api/v1/generations/{task_id}/cancel"), 409, "generation_not_cancelable")


def test_unknown_model(api_client, funded):
    error(submit(api_client, model="no-such-model", input={"prompt": "x"}), 404, "model_not_found", "model")


def test_chat_models_are_refused_here(api_client, funded, rivya_settings):
    chat = {
        **GENERATION_MODELS[0],
        "id": "test-chat",
        "kind": "chat",
        "provider": "tests.rivya_api.catalog_fixtures.ChatTestProvider",
        "parameters": {"type": "object"},
        "pricing": {"input_per_1k_tokens": 1, "output_per_1k_tokens": 2},
    }
    rivya_settings("RIVYA_API", MODELS=[*GENERATION_MODELS, chat])
    error(submit(api_client, model="test-chat", input={}), 400, "model_not_supported", "model")


@pytest.mark.parametrize(
    ("input", "param"),
    [
        ({}, "input.prompt"),
        ({"prompt": "x", "width": 5}, "input.width"),
        ({"prompt": "x", "width": "wide"}, "input.width"),
        ({"prompt": 7}, "input.prompt"),
    ],
)
def test_schema_violations_name_the_parameter(api_client, funded, input, param):
    response = submit(api_client, model="test-image", input=input)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert not GenerationTask.objects.exists()


def test_unknown_top_level_field_is_named(api_client, funded):
    body = error(
        submit(api_client, model="test-image", input={"prompt": "x"}, colour="red"), 400, "unknown_parameter", "colour"
    )
    assert body["message"] == (
        "Unknown field 'colour'; the fields are model, input, metadata, max_credits and dry_run. "
        "The model's parameters go inside input."
    )


def test_a_top_level_model_parameter_is_told_to_move_into_input(api_client, funded):
    body = error(submit(api_client, model="test-image", prompt="a lighthouse"), 400, "unknown_parameter", "prompt")
    assert body["message"] == (
        '\'prompt\' is a model parameter: put it inside input, e.g. {"model": "test-image", "input": {"prompt": "…"}}.'
    )
    assert wallet_get(account=funded).held == 0


def test_an_unknown_input_parameter_lists_the_models_parameters(api_client, funded):
    body = error(
        submit(api_client, model="test-image", input={"prompt": "x", "colour": "red"}),
        400,
        "unknown_parameter",
        "input.colour",
    )
    assert body["message"].startswith("Unknown parameter input.colour for model test-image; its parameters are ")
    assert "prompt" in body["message"]


def test_input_must_be_an_object(api_client, funded):
    error(submit(api_client, model="test-image", input=["prompt"]), 400, "invalid_parameter", "input")


def test_another_accounts_file_is_refused(api_client, funded, make_account):
    theirs = file_create(account=make_account(), content=media.png(), filename="a.png", purpose="reference")
    response = submit(api_client, model="test-image", input={"prompt": "x", "reference_image": theirs.public_id})
    error(response, 400, "file_not_found", "input.reference_image")
    assert wallet_get(account=funded).held == 0


def test_wrong_file_type_is_refused(api_client, funded):
    sound = file_create(account=funded, content=media.wav(), filename="a.wav", purpose="reference")
    response = submit(api_client, model="test-image", input={"prompt": "x", "reference_image": sound.public_id})
    assert response.status_code in (400, 415)
    assert response.json()["error"]["param"] == "input.reference_image"


def test_max_credits_below_price_is_402_before_reserving(api_client, funded):
    response = submit(api_client, model="test-image", input={"prompt": "x"}, max_credits=3)
    body = error(response, 402, "max_credits_exceeded", "max_credits")
    assert body["message"] == (
        "This generation costs 4 credits, more than max_credits (3); nothing was reserved. "
        "Send max_credits of at least 4, or change the input to cost less."
    )
    assert response["x-should-retry"] == "false"
    assert wallet_get(account=funded).held == 0
    assert submit(api_client, model="test-image", input={"prompt": "x"}, max_credits=4).status_code == 202


def test_insufficient_credits_is_402_not_retryable(api_client, account):
    credits_grant(account=account, amount=2, reference="small")
    response = submit(api_client, model="test-image", input={"prompt": "x"})
    error(response, 402, "insufficient_credits")
    assert response["x-should-retry"] == "false"
    assert not GenerationTask.objects.exists()


def test_another_accounts_task_is_404(api_client, funded, make_account, make_api_client):
    task_id = submit(api_client, model="test-image", input={"prompt": "x"}).json()["id"]
    stranger = make_api_client(make_account())
    error(stranger.get(f"/api/v1/generations/{task_id}"), 404, "generation_not_found")
    error(stranger.post(f"/api/v1/generations/{task_id}/cancel"), 404, "generation_not_found")


def test_prefer_wait_over_60_is_400(api_client, funded):
    response = api_client.post(
        "/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}}, format="json", HTTP_PREFER="wait=61"
    )
    error(response, 400, "invalid_prefer_wait", "Prefer")
    assert not GenerationTask.objects.exists()


def test_prefer_wait_times_out_with_the_current_state(api_client, funded):
    task_id = submit(api_client, model="test-image", input={"prompt": "x"}).json()["id"]
    response = api_client.get(f"/api/v1/generations/{task_id}", HTTP_PREFER="wait=1")
    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response["Preference-Applied"] == "wait=1"
