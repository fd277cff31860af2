"""Isolation of background work (issue 21, item 1): one bad task never stops the others, and no task
stays queued or running past its model's time limit plus the lease, whatever its data.

The poisoned task is the reporter's: a metadata key of 300,000 characters (written to the row
directly, as a task accepted before submissions were bounded would carry it), whose finishing
event can never be published. These run on SQLite, and on PostgreSQL + Redis in CI.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_api.files.models import File
from rivya_api.generations import services, sweeps
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers.local import LocalAudioProvider
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [pytest.mark.django_db, pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})]

POISON = {"k" * 300_000: "v"}


@pytest.fixture
def funded(make_account):
    def make():
        account = make_account()
        credits_grant(account=account, amount=100, reference=f"grant-{account.pk}")
        return account

    return make


def running_with_a_dead_worker(account, model_id: str = "test-slow", **row) -> GenerationTask:
    task = services.generation_create(account=account, model_id=model_id, input={"prompt": "x"})
    services.generation_start(task_pk=task.pk)
    GenerationTask.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10), **row)
    return GenerationTask.objects.get(pk=task.pk)


def test_a_poisoned_task_among_healthy_ones_does_not_stop_the_sweep(funded):
    attacker, victim = funded(), funded()
    healthy_before = running_with_a_dead_worker(victim)
    poisoned = running_with_a_dead_worker(attacker, metadata=POISON)
    healthy_after = running_with_a_dead_worker(victim)

    result = sweeps.generations_sweep(now=timezone.now())

    assert result["recovered"] == 2
    for task in (healthy_before, healthy_after):
        task.refresh_from_db()
        assert (task.status, task.error_code, task.refunded) == ("failed", "worker_lost", task.price)
    assert wallet_get(account=victim).held == 0
    poisoned.refresh_from_db()
    assert poisoned.status == "running"
    assert poisoned.sweep_failures == 1
    assert poisoned.sweep_retry_at > timezone.now()
    # The next run skips it while it backs off, and still handles new work.
    third = running_with_a_dead_worker(victim)
    assert sweeps.generations_sweep(now=timezone.now())["recovered"] == 1
    third.refresh_from_db()
    assert third.status == "failed"


def test_a_task_every_sweep_fails_on_is_abandoned_failed_and_released(funded):
    account = funded()
    # No deadline (a row from before deadlines existed): only the backoff and the failure count end it.
    poisoned = running_with_a_dead_worker(account, metadata=POISON, deadline_at=None)
    now = timezone.now()
    for attempt in range(5):
        assert poisoned.status == "running", attempt
        sweeps.generations_sweep(now=now)
        poisoned.refresh_from_db()
        now += timedelta(hours=2)  # past any backoff
    poisoned.refresh_from_db()
    assert (poisoned.status, poisoned.error_code, poisoned.refunded) == ("failed", "internal_error", poisoned.price)
    assert wallet_get(account=account).held == 0
    assert not WebhookEvent.objects.filter(type="generation.failed").exists()  # it could not be published


def test_a_task_past_its_deadline_is_failed_even_while_its_worker_beats(funded):
    account = funded()
    task = services.generation_create(account=account, model_id="test-slow", input={"prompt": "x"})
    services.generation_start(task_pk=task.pk)
    task.refresh_from_db()
    assert task.deadline_at <= timezone.now() + timedelta(seconds=60) + timedelta(minutes=2, seconds=5)
    GenerationTask.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now(), metadata=POISON)
    result = sweeps.generations_sweep(now=task.deadline_at + timedelta(seconds=1))
    assert result["timed_out"] == 1
    task.refresh_from_db()
    assert (task.status, task.error_code) == ("failed", "generation_timeout")
    assert wallet_get(account=account).held == 0


def test_a_task_that_never_starts_times_out_in_the_queue(funded):
    account = funded()
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "x"})
    sweeps.generations_sweep(now=task.deadline_at + timedelta(seconds=1))
    task.refresh_from_db()
    assert (task.status, task.error_code, task.refunded) == ("failed", "queue_timeout", task.price)


def test_a_run_whose_success_cannot_be_recorded_fails_released_and_leaves_no_file(funded):
    account = funded()
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "x"})
    GenerationTask.objects.filter(pk=task.pk).update(metadata=POISON)
    done = services.generation_run(task_pk=task.pk)
    assert (done.status, done.error_code) == ("failed", "internal_error")
    assert wallet_get(account=account).held == 0
    assert not File.objects.filter(purpose="generation_output", deleted_at__isnull=True).exists()
    assert not File.objects.exclude(storage_name="").exists()


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_provider_that_overruns_is_stopped_at_its_time_limit(funded, rivya_settings, tmp_path):
    pid_file = tmp_path / "pid"
    models = [{**m, "options": {"pid_file": str(pid_file)}} if m["id"] == "test-runaway" else m
              for m in GENERATION_MODELS]  # fmt: skip
    rivya_settings("RIVYA_API", MODELS=models)
    account = funded()
    task = services.generation_create(account=account, model_id="test-runaway", input={"prompt": "x"})
    started = time.monotonic()
    done = services.generation_run(task_pk=task.pk)
    assert time.monotonic() - started < 6  # the model's limit is 2 s
    assert (done.status, done.error_code, done.refunded) == ("failed", "generation_timeout", done.price)
    assert _gone(int(pid_file.read_text()))
    assert wallet_get(account=account).held == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_process_executor")
def test_the_embedded_executor_stops_an_overrunning_provider_too(api_client, account):
    credits_grant(account=account, amount=10, reference="grant")
    response = api_client.post("/api/v1/generations", {"model": "test-runaway", "input": {"prompt": "x"}},
                               format="json")  # fmt: skip
    assert response.status_code == 202
    task_id = response.json()["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        task = GenerationTask.objects.get(public_id=task_id)
        if task.is_terminal:
            break
        time.sleep(0.1)
    assert (task.status, task.error_code) == ("failed", "generation_timeout")


@pytest.mark.parametrize("length", [180, 250, 2000])
def test_the_fallback_synthesizer_is_bounded_for_any_valid_prompt(length):
    text = ("la " * length)[:length]  # no full stop: the pitch keeps falling (issue 21: 250 letters ran for minutes)
    started = time.monotonic()
    LocalAudioProvider({"engine": "synth"}).run(input={"prompt": text, "speed": 80})
    assert time.monotonic() - started < 20
