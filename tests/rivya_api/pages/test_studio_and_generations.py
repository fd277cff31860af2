"""Studio submits on the account's one wallet; the generations page lists every task with its outputs."""

from __future__ import annotations

import pytest

from rivya_api.generations import services
from rivya_api.generations.models import GenerationTask
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from rivya_webhooks.models import WebhookEvent
from rivya_webhooks.services import webhook_endpoint_create
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]

STUDIO = "/studio/"
GENERATIONS = "/settings/generations"


@pytest.fixture
def funded(member):
    credits_grant(account=member.account, amount=50, reference="test-grant")
    return member


def studio_submit(member, django_capture_on_commit_callbacks, **data) -> tuple:
    with django_capture_on_commit_callbacks(execute=False):
        response = member.client.post(STUDIO, {"model": "test-image", "prompt": "a red fox", **data})
    return response


def test_studio_lists_generation_models_and_the_wallet(funded):
    html = funded.client.get(STUDIO).content.decode()
    assert 'value="test-image"' in html
    assert 'value="test-audio"' in html
    assert 'data-wallet="available">50<' in html


def test_studio_submission_is_charged_to_the_same_wallet_and_listed_with_api_tasks(
    funded, make_api_client, django_capture_on_commit_callbacks
):
    api = make_api_client(funded.account)
    with django_capture_on_commit_callbacks(execute=False):
        api_task = api.post("/api/v1/generations", {"model": "test-image", "input": {"prompt": "api"}}, format="json")
    assert api_task.status_code == 202
    response = studio_submit(funded, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    task = GenerationTask.objects.get(account=funded.account, source="studio")
    assert task.submitted_by == f"user:{funded.user.pk}"
    assert task.input["prompt"] == "a red fox"
    studio = funded.client.get(STUDIO).content.decode()
    assert f"Submitted {task.public_id}: 4 credits reserved." in studio
    assert f'data-task-id="{task.public_id}"' in studio
    wallet = wallet_get(account=funded.account)
    assert (wallet.balance, wallet.held) == (50, 8)  # both holds on one wallet

    # One task list: the API lists the Studio task, the page lists the API task.
    listed = [item["id"] for item in api.get("/api/v1/generations").json()["data"]]
    assert task.public_id in listed
    assert api_task.json()["id"] in listed
    page = funded.client.get(GENERATIONS).content.decode()
    assert task.public_id in page
    assert api_task.json()["id"] in page


def test_studio_task_runs_charges_and_fires_the_accounts_webhooks(funded, django_capture_on_commit_callbacks):
    webhook_endpoint_create(
        account=funded.account,
        url="https://hooks.example.com/x",
        event_types=["*"],
        resolver=lambda host: ["93.184.215.14"],
    )
    studio_submit(funded, django_capture_on_commit_callbacks)
    task = GenerationTask.objects.get(account=funded.account)
    with django_capture_on_commit_callbacks(execute=False):
        services.generation_run(task_pk=task.pk)  # what the worker does
    task.refresh_from_db()
    assert (task.status, task.charged) == ("succeeded", 4)
    assert wallet_get(account=funded.account).balance == 46
    event = WebhookEvent.objects.get(account=funded.account, type="generation.succeeded")
    assert event.data["id"] == task.public_id
    assert event.deliveries.count() == 1

    row = funded.client.get(f"{GENERATIONS}/{task.public_id}/row").content.decode()
    assert 'data-status="succeeded"' in row
    assert "4 charged" in row
    assert "<img src=" in row
    assert "/api/v1/files/file_" in row
    detail = funded.client.get(f"{GENERATIONS}/{task.public_id}").content.decode()
    assert "&quot;prompt&quot;: &quot;a red fox&quot;" in detail
    assert f"user:{funded.user.pk}" not in detail  # primary keys never leak
    for entry_type in ("reserve", "settle"):
        assert f">{entry_type}<" in detail


def test_studio_refuses_what_the_api_refuses(funded, django_capture_on_commit_callbacks):
    response = studio_submit(funded, django_capture_on_commit_callbacks, parameters='{"colour": "red"}')
    assert response.status_code == 400
    assert "colour" in response.content.decode()
    response = studio_submit(funded, django_capture_on_commit_callbacks, parameters="[1, 2")
    assert "is not valid JSON" in response.content.decode()
    response = studio_submit(funded, django_capture_on_commit_callbacks, model="no-such-model")
    assert response.status_code == 400
    assert not GenerationTask.objects.exists()


def test_studio_without_enough_credits_says_so_and_reserves_nothing(member, django_capture_on_commit_callbacks):
    credits_grant(account=member.account, amount=3, reference="small")
    response = studio_submit(member, django_capture_on_commit_callbacks)
    assert response.status_code == 400
    assert "Not enough credits: this generation needs 4, and 3 are available." in response.content.decode()
    assert not GenerationTask.objects.exists()
    assert wallet_get(account=member.account).held == 0


def test_outputs_are_previewed_by_kind(funded, django_capture_on_commit_callbacks):
    for model_id in ("test-image", "test-audio", "test-video"):
        studio_submit(funded, django_capture_on_commit_callbacks, model=model_id)
    for task in GenerationTask.objects.all():
        with django_capture_on_commit_callbacks(execute=False):
            services.generation_run(task_pk=task.pk)
    html = funded.client.get(GENERATIONS).content.decode()
    assert html.count("<img src=") == 1
    assert html.count("<audio controls") == 1
    assert html.count("<video controls") == 1


def test_status_filter_live_endpoint_and_cancel(funded, django_capture_on_commit_callbacks):
    studio_submit(funded, django_capture_on_commit_callbacks)
    studio_submit(funded, django_capture_on_commit_callbacks, model="test-failing")
    first, failing = GenerationTask.objects.order_by("pk")
    with django_capture_on_commit_callbacks(execute=False):
        services.generation_run(task_pk=failing.pk)
    only_failed = funded.client.get(GENERATIONS, {"status": "failed"}).content.decode()
    assert f'data-task-id="{failing.public_id}"' in only_failed
    assert f'data-task-id="{first.public_id}"' not in only_failed

    live = funded.client.get(f"{GENERATIONS}/live", {"ids": f"{first.public_id},{failing.public_id},task_nope"})
    assert live["Cache-Control"] == "no-store"
    states = {item["id"]: item["status"] for item in live.json()["data"]}
    assert states == {first.public_id: "queued", failing.public_id: "failed"}

    with django_capture_on_commit_callbacks(execute=False):
        response = funded.client.post(f"{GENERATIONS}/{first.public_id}/cancel", {"next": "https://evil.example/"})
    assert response.url == GENERATIONS
    first.refresh_from_db()
    assert (first.status, first.released) == ("canceled", 4)
    assert wallet_get(account=funded.account).held == 0


def test_another_accounts_tasks_are_not_reachable(
    funded, stranger, make_api_client, django_capture_on_commit_callbacks
):
    studio_submit(funded, django_capture_on_commit_callbacks)
    task = GenerationTask.objects.get()
    assert task.public_id not in stranger.client.get(GENERATIONS).content.decode()
    assert task.public_id not in stranger.client.get(STUDIO).content.decode()
    for path in (f"{GENERATIONS}/{task.public_id}", f"{GENERATIONS}/{task.public_id}/row"):
        assert stranger.client.get(path).status_code == 404, path
    assert stranger.client.post(f"{GENERATIONS}/{task.public_id}/cancel").status_code == 404
    assert stranger.client.get(f"{GENERATIONS}/live", {"ids": task.public_id}).json()["data"] == []
    task.refresh_from_db()
    assert task.status == "queued"
    # Nor can their API key.
    response = make_api_client(stranger.account).get(f"/api/v1/generations/{task.public_id}")
    assert response.status_code == 404
