"""Generation lifecycle through the services: reserve at submission, settle on success, release otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image

from rivya_api.files.selectors import file_open
from rivya_api.files.services import file_create
from rivya_api.generations import services, sweeps
from rivya_api.generations.models import GenerationTask
from rivya_billing.exceptions import InsufficientCreditsError
from rivya_billing.selectors import wallet_entries, wallet_get
from rivya_billing.services import credits_grant
from rivya_webhooks.models import WebhookEvent
from tests import media
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]


@pytest.fixture
def funded(account):
    credits_grant(account=account, amount=100, reference="test-grant")
    return account


def entry_types(account) -> list[str]:
    return [entry.type for entry in wallet_entries(account=account).order_by("sequence")]


def test_submission_reserves_the_quoted_price(funded):
    task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "a red fox"})
    wallet = wallet_get(account=funded)
    assert task.status == "queued"
    assert task.price == 4
    assert (wallet.balance, wallet.held) == (100, 4)


def test_success_charges_exactly_the_quote_and_publishes_one_event(funded):
    task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "a red fox"})
    done = services.generation_run(task_pk=task.pk)
    assert done.status == "succeeded"
    assert (done.charged, done.released, done.progress) == (4, 0, 100)
    wallet = wallet_get(account=funded)
    assert (wallet.balance, wallet.held) == (96, 0)
    assert entry_types(funded) == ["grant", "reserve", "settle"]
    events = WebhookEvent.objects.filter(account=funded)
    assert [event.type for event in events] == ["generation.succeeded"]
    payload = events[0].data
    assert payload["id"] == task.public_id
    assert payload["credits"] == {"reserved": 4, "charged": 4, "released": 0, "refunded": 0}
    assert payload["outputs"][0]["url"].startswith("http")


def test_outputs_are_real_media(funded):
    task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "a red fox"})
    done = services.generation_run(task_pk=task.pk)
    output = done.outputs.get()
    with file_open(output) as stream:
        image = Image.open(stream)
        image.load()
    assert image.size == (512, 512)


def test_failure_releases_in_full(funded):
    task = services.generation_create(account=funded, model_id="test-failing", input={"prompt": "x"})
    done = services.generation_run(task_pk=task.pk)
    assert done.status == "failed"
    assert done.error_code == "model_unavailable"
    assert (done.charged, done.released) == (0, 5)
    wallet = wallet_get(account=funded)
    assert (wallet.balance, wallet.held) == (100, 0)
    assert [e.type for e in WebhookEvent.objects.filter(account=funded)] == ["generation.failed"]


def test_insufficient_credits_creates_nothing(account):
    credits_grant(account=account, amount=3, reference="small")
    with pytest.raises(InsufficientCreditsError):
        services.generation_create(account=account, model_id="test-image", input={"prompt": "x"})
    assert not GenerationTask.objects.exists()
    assert wallet_get(account=account).held == 0


def test_cancel_of_a_queued_task_releases(funded):
    task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "x"})
    canceled = services.generation_cancel(account=funded, task_id=task.public_id)
    assert canceled.status == "canceled"
    assert canceled.released == 4
    assert wallet_get(account=funded).held == 0
    assert services.generation_run(task_pk=task.pk) is None  # a late worker does nothing


def test_cancel_of_a_running_task_stops_it_and_releases(funded):
    task = services.generation_create(account=funded, model_id="test-slow", input={"prompt": "x", "seconds": 0.3})
    services.generation_start(task_pk=task.pk)
    services.generation_cancel(account=funded, task_id=task.public_id)
    # The worker notices at its next progress report.
    GenerationTask.objects.filter(pk=task.pk).update(status="queued")
    done = services.generation_run(task_pk=task.pk)
    assert done.status == "canceled"
    assert wallet_get(account=funded).held == 0


def test_reference_image_shapes_the_result(funded, account):
    reference = file_create(account=funded, content=media.png((64, 64)), filename="ref.png", purpose="reference")
    plain = services.generation_create(account=funded, model_id="test-image", input={"prompt": "p", "seed": 1})
    shaped = services.generation_create(
        account=funded, model_id="test-image", input={"prompt": "p", "seed": 1, "reference_image": reference.public_id}
    )
    plain_out = services.generation_run(task_pk=plain.pk).outputs.get()
    shaped_out = services.generation_run(task_pk=shaped.pk).outputs.get()
    assert plain_out.sha256 != shaped_out.sha256


def test_dead_worker_is_noticed_and_released(funded):
    task = services.generation_create(account=funded, model_id="test-slow", input={"prompt": "x"})
    services.generation_start(task_pk=task.pk)  # then the worker dies: no heartbeat ever again
    later = timezone.now() + timedelta(minutes=5)
    assert sweeps.generations_sweep(now=later) == {"requeued": 0, "recovered": 1, "timed_out": 0}
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.error_code == "worker_lost"
    assert wallet_get(account=funded).held == 0


def test_dead_worker_on_a_retry_safe_model_is_requeued_once(funded, django_capture_on_commit_callbacks):
    task = services.generation_create(account=funded, model_id="test-slow-retry", input={"prompt": "x"})
    services.generation_start(task_pk=task.pk)
    later = timezone.now() + timedelta(minutes=5)
    with django_capture_on_commit_callbacks(execute=False):
        sweeps.generations_sweep(now=later)
    task.refresh_from_db()
    assert task.status == "queued"
    done = services.generation_run(task_pk=task.pk)
    assert done.status == "succeeded"
    assert done.attempts == 2
    assert wallet_get(account=funded).balance == 98


def test_lost_queue_message_is_requeued(funded, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "x"})
    later = timezone.now() + timedelta(minutes=5)
    # The sweeper hands it to the queue again (here: the in-process executor).
    result = sweeps.generations_sweep(now=later)
    assert result["requeued"] == 1
    task.refresh_from_db()
    assert task.queued_at >= later


def test_the_generation_updated_signal_follows_each_committed_change(funded, django_capture_on_commit_callbacks):
    from rivya_api.signals import generation_updated

    seen = []

    def receiver(sender, account_id, task, **kwargs):
        seen.append((account_id, task["id"], task["status"]))

    def failing(sender, **kwargs):
        raise RuntimeError("a broken host receiver")

    generation_updated.connect(receiver)
    generation_updated.connect(failing)
    try:
        task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "a red fox"})
        with django_capture_on_commit_callbacks(execute=True):
            done = services.generation_run(task_pk=task.pk)
    finally:
        generation_updated.disconnect(receiver)
        generation_updated.disconnect(failing)
    assert done.status == "succeeded", "a failing receiver does not reach the change"
    statuses = [status for account_id, task_id, status in seen if task_id == task.public_id]
    assert {account_id for account_id, _, _ in seen} == {funded.pk}
    assert statuses[-1] == "succeeded"
    assert "running" in statuses
