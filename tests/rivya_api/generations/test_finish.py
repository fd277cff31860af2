"""The finish of a run: outputs, charge, state and event in one transaction, or none of them."""

from __future__ import annotations

from unittest import mock

import pytest

from rivya_api.files.models import File
from rivya_api.generations import services
from rivya_api.generations.models import GenerationTask
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.files_fixtures import stored_files
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]


@pytest.fixture
def funded(account, django_capture_on_commit_callbacks):
    credits_grant(account=account, amount=100, reference="test-grant")
    with django_capture_on_commit_callbacks(execute=False):  # not run by the embedded executor
        task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
    return task


def test_a_run_that_lost_its_claim_leaves_no_output_and_no_charge(funded, media_root):
    task = services.generation_start(task_pk=funded.pk)
    GenerationTask.objects.filter(pk=funded.pk).update(hold_token=task.hold_token + 1)  # another run claimed it
    assert services._generate(task) is None
    assert not File.objects.exists()
    assert stored_files(media_root) == []
    assert wallet_get(account=funded.account).held == 4
    assert not WebhookEvent.objects.exists()


def test_a_cancel_asked_during_the_run_is_honoured_at_the_finish(funded, media_root):
    task = services.generation_start(task_pk=funded.pk)
    services.generation_cancel(account=funded.account, task_id=funded.public_id)
    done = services._generate(task)
    assert (done.status, done.charged, done.released) == ("canceled", 0, 4)
    assert not File.objects.exists()
    assert stored_files(media_root) == []
    assert [event.type for event in WebhookEvent.objects.all()] == ["generation.canceled"]


def test_a_finish_that_fails_commits_no_output_and_fails_the_task_released(funded, media_root):
    task = services.generation_start(task_pk=funded.pk)
    with mock.patch("rivya_api.generations.finishing._settle_joined", side_effect=RuntimeError("ledger down")):
        done = services._generate(task)
    assert (done.status, done.error_code, done.released) == ("failed", "internal_error", 4)
    assert not File.objects.exists()
    assert stored_files(media_root) == []
    assert wallet_get(account=funded.account).held == 0


def test_the_happy_path_attaches_the_stored_output(funded, media_root):
    done = services.generation_run(task_pk=funded.pk)
    assert done.status == "succeeded"
    assert [file.pk for file in done.outputs.all()] == list(File.objects.values_list("pk", flat=True))
    assert len(stored_files(media_root)) == 1
