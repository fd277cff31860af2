"""A run settles, fails or writes progress only under its own claim; its outputs' bytes are
stored before the finish transaction and never left behind by a run that did not commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from rivya_api.files.models import File
from rivya_api.files.selectors import file_storage
from rivya_api.generations import finishing, heartbeat, services, sweeps
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers.local import LocalImageProvider
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.files_fixtures import stored_files
from tests.rivya_api.generations.fakes import GENERATION_MODELS, LOCAL, model


class TwoImagesProvider(LocalImageProvider):
    """The local image provider's output, twice."""

    def generate(self, *, params: dict[str, Any], input_files: Any, progress: Any) -> list[Any]:
        return super().generate(params=params, input_files=input_files, progress=progress) * 2


MODELS = [
    *GENERATION_MODELS,
    model("test-free", f"{LOCAL}.LocalImageProvider", price=0),
    model("test-two", "tests.rivya_api.generations.test_claims.TwoImagesProvider", price=4),
]
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": MODELS, "GENERATION_PROVIDER_PROCESS": False}}),
]


@pytest.fixture
def create(account, django_capture_on_commit_callbacks):
    credits_grant(account=account, amount=100, reference="test-grant")

    def create(model_id: str) -> GenerationTask:
        with django_capture_on_commit_callbacks(execute=False):
            return services.generation_create(account=account, model_id=model_id, input={"prompt": "a red fox"})

    return create


def _claimed_again(task_pk: int) -> GenerationTask:
    """The sweeper presumed the first run dead and re-queued the task; run B claimed it."""
    GenerationTask.objects.filter(pk=task_pk).update(status="queued")
    services.claim_hold(GenerationTask.objects.get(pk=task_pk), services.api_settings.GENERATION_RUN_LEASE)
    return services.generation_start(task_pk=task_pk)


def test_a_superseded_run_that_fails_leaves_the_next_runs_task_alone(create, account):
    created = create("test-failing")
    run_a = services.generation_start(task_pk=created.pk)
    run_b = _claimed_again(created.pk)
    assert services._generate(run_a) is None  # A's provider fails (ProviderError) after B's claim
    after = GenerationTask.objects.get(pk=created.pk)
    assert (after.status, after.hold_token, after.attempts) == ("running", run_b.hold_token, 2)
    assert wallet_get(account=account).held == 5
    assert not WebhookEvent.objects.exists()
    assert services._fail_safely(run_a, code="internal_error", message="x") is None
    # Its own run still fails it.
    assert services._generate(run_b).status == "failed"
    assert wallet_get(account=account).held == 0


def test_a_free_tasks_superseded_run_neither_settles_nor_writes_progress(create, media_root):
    created = create("test-free")
    run_a = services.generation_start(task_pk=created.pk)
    run_b = _claimed_again(created.pk)
    assert (run_a.hold_token, run_b.hold_token, run_b.attempts) == (None, None, 2)
    progress = heartbeat._Progress(run_a, min_interval=0)
    with pytest.raises(heartbeat.GenerationSuperseded):
        progress(50)
    assert services._generate(run_a) is None
    assert GenerationTask.objects.get(pk=created.pk).status == "running"
    assert not File.objects.exists()
    assert stored_files(media_root) == []
    assert services._generate(run_b).status == "succeeded"


def test_every_output_is_stored_before_the_finish_transaction_opens(create, media_root, monkeypatch):
    created = create("test-two")
    task = services.generation_start(task_pk=created.pk)
    outside = len(connection.atomic_blocks)
    depths = []
    storage_class = type(file_storage())
    save = storage_class.save

    def recording_save(self, *args: Any, **kwargs: Any) -> Any:
        depths.append(len(connection.atomic_blocks))
        return save(self, *args, **kwargs)

    monkeypatch.setattr(storage_class, "save", recording_save)
    done = services._generate(task)
    assert (done.status, done.outputs.count()) == ("succeeded", 2)
    assert depths == [outside, outside]
    assert len(stored_files(media_root)) == 2


def _killed_before_commit(task: GenerationTask, monkeypatch) -> None:
    """Run ``task`` to the point its outputs' bytes are stored, then stop as a killed worker would."""

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after it runs

    monkeypatch.setattr(finishing, "_mark_succeeded", killed)
    monkeypatch.setattr(finishing.pg_succeed, "insert_and_mark", killed)  # the mark on PostgreSQL
    monkeypatch.setattr(finishing, "_lock_running", killed)
    monkeypatch.setattr(finishing, "_remove_bytes", lambda files: None)
    with pytest.raises(KeyboardInterrupt):
        services._generate(task)
    monkeypatch.undo()


@pytest.mark.parametrize("model_id", ["test-image", "test-slow-retry"], ids=["failed", "requeued"])
def test_bytes_of_a_run_killed_before_its_commit_are_removed_when_it_is_recovered(
    create, media_root, monkeypatch, django_capture_on_commit_callbacks, model_id
):
    created = create(model_id)
    _killed_before_commit(services.generation_start(task_pk=created.pk), monkeypatch)
    assert len(stored_files(media_root)) == 1
    assert not File.objects.exists()
    # The requeue's job is not handed to the in-process executor (no broker here): it would wait
    # for this test's transaction (SQLite's one write lock), then run in a later test, on its rows.
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    with django_capture_on_commit_callbacks(execute=True):
        sweeps.generation_recover(task_pk=created.pk)
    assert stored_files(media_root) == []
    if model_id == "test-slow-retry":  # the next run's outputs are its own and stay
        done = services.generation_run(task_pk=created.pk)
        assert done.status == "succeeded"
        assert [path.name for path in stored_files(media_root)] == [
            file.storage_name.rsplit("/", 1)[1] for file in done.outputs.all()
        ]
