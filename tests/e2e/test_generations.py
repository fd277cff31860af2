"""Generations end to end: upload, submit, run in the background, download, pay once, get a signed webhook.

Once with the in-process executor (the embedded default) and once with a real
``celery -A config worker`` on Redis; then the faults: a worker killed with
SIGKILL mid-task, a purged broker queue, and 50 submissions racing for 20 tasks'
worth of credits.
"""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta

import av
import pytest
from django.db import connection
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from config.settings import RIVYA_MODELS
from rivya_api.generations import sweeps
from rivya_api.generations.models import GenerationTask
from rivya_billing.models import Hold
from rivya_billing.selectors import wallet_entries, wallet_get
from rivya_billing.services import credits_grant
from tests import media
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.rivya_webhooks.receiver import Receiver
from tests.workers import CeleryWorker

MODELS = [*RIVYA_MODELS, *GENERATION_MODELS]
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": MODELS}, "RIVYA_WEBHOOKS": {"ALLOW_PRIVATE_NETWORKS": True}}),
]


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


@pytest.fixture
def funded(account, settings):
    settings.DEBUG = True  # http:// webhook targets are allowed only with DEBUG
    credits_grant(account=account, amount=200, reference="e2e-grant")
    return account


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def webhook_secret(client: APIClient, url: str) -> str:
    response = client.post(
        "/api/v1/webhooks", {"url": url, "event_types": ["generation.succeeded", "generation.failed"]}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["secret"]


def poll_terminal(client: APIClient, task_id: str, timeout: float = 90) -> dict:
    def terminal():
        body = client.get(f"/api/v1/generations/{task_id}").json()
        return body if body["status"] in ("succeeded", "failed", "canceled") else None

    return wait_for(terminal, timeout)


def download(client: APIClient, url: str) -> bytes:
    response = APIClient().get(url)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def check_media(kind: str, data: bytes) -> None:
    if kind == "image":
        Image.open(io.BytesIO(data)).load()
        return
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        frames = sum(1 for _ in container.decode(stream))
    assert frames >= (24 if kind == "video" else 1)


def verified_events(receiver: Receiver, secret: str) -> list[dict]:
    # verify() raises on a bad signature and returns the parsed envelope otherwise.
    return [Webhook(secret).verify(r.body, r.headers) for r in receiver.requests]


def run_flow(client: APIClient, account, receiver: Receiver, model: str, kind: str, extra: dict | None = None):
    secret = webhook_secret(client, receiver.url())
    upload = client.post("/api/v1/files", {"file": io.BytesIO(media.png()), "purpose": "reference"}, format="multipart")
    assert upload.status_code == 201, upload.content
    extra = dict(extra or {})
    if kind == "image":
        extra["reference_image"] = upload.json()["id"]
    created = client.post(
        "/api/v1/generations", {"model": model, "input": {"prompt": "a quiet harbour", **extra}}, format="json"
    )
    assert created.status_code == 202, created.content
    task = poll_terminal(client, created.json()["id"])
    assert task["status"] == "succeeded", task
    check_media(kind, download(client, task["outputs"][0]["url"]))
    price = task["credits"]["reserved"]
    assert task["credits"] == {"reserved": price, "charged": price, "released": 0, "refunded": 0}
    settles = [e for e in wallet_entries(account=account) if e.reference == task["id"] and e.type == "settle"]
    assert len(settles) == 1
    assert wallet_get(account=account).held == 0
    events = wait_for(lambda: verified_events(receiver, secret), timeout=60)
    assert [(e["type"], e["data"]["id"]) for e in events] == [("generation.succeeded", task["id"])]
    return task


@pytest.mark.usefixtures("in_process_executor")
@pytest.mark.parametrize(
    ("model", "kind"), [("rivya-image-1", "image"), ("rivya-audio-1", "audio"), ("rivya-video-1", "video")]
)
def test_in_process_flow(api_client, funded, receiver, model, kind):
    run_flow(api_client, funded, receiver, model, kind)


@pytest.mark.usefixtures("in_process_executor")
def test_in_process_prefer_wait_returns_the_finished_task(api_client, funded):
    response = api_client.post(
        "/api/v1/generations",
        {"model": "rivya-image-1", "input": {"prompt": "x"}},
        format="json",
        HTTP_PREFER="wait=60",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded"
    assert response["Preference-Applied"] == "wait=60"


@pytest.mark.usefixtures("in_process_executor")
def test_in_process_failure_releases_in_full(api_client, funded, receiver):
    secret = webhook_secret(api_client, receiver.url())
    created = api_client.post(
        "/api/v1/generations", {"model": "test-failing", "input": {"prompt": "x"}}, format="json"
    ).json()
    task = poll_terminal(api_client, created["id"])
    assert task["status"] == "failed"
    assert task["error"]["code"] == "model_unavailable"
    assert task["credits"] == {"reserved": 5, "charged": 0, "released": 5, "refunded": 5}
    assert (wallet_get(account=funded).balance, wallet_get(account=funded).held) == (200, 0)
    events = wait_for(lambda: verified_events(receiver, secret), timeout=60)
    assert events[0]["type"] == "generation.failed"


worker_marks = [pytest.mark.redis, pytest.mark.postgres]


@pytest.mark.parametrize(
    ("model", "kind"), [("rivya-image-1", "image"), ("rivya-audio-1", "audio"), ("rivya-video-1", "video")]
)
@pytest.mark.redis
@pytest.mark.postgres
def test_worker_flow(api_client, funded, receiver, redis_purged, model, kind):
    with CeleryWorker(extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}):
        run_flow(api_client, funded, receiver, model, kind)


@pytest.mark.redis
@pytest.mark.postgres
def test_worker_failure_releases_in_full(api_client, funded, redis_purged):
    with CeleryWorker(extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}):
        created = api_client.post(
            "/api/v1/generations", {"model": "test-failing", "input": {"prompt": "x"}}, format="json"
        ).json()
        task = poll_terminal(api_client, created["id"])
    assert task["credits"] == {"reserved": 5, "charged": 0, "released": 5, "refunded": 5}
    assert wallet_get(account=funded).held == 0


@pytest.mark.redis
@pytest.mark.postgres
def test_a_celery_worker_stops_a_provider_that_overruns_its_time_limit(api_client, funded, redis_purged):
    """Issue 21: the limit is enforced on the work itself, in a prefork worker as in the embedded executor."""
    with CeleryWorker(extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}):
        created = api_client.post(
            "/api/v1/generations", {"model": "test-runaway", "input": {"prompt": "x"}}, format="json"
        ).json()
        started = time.monotonic()
        task = poll_terminal(api_client, created["id"], timeout=30)
        # Stopped at the model's 2 s limit (plus the worker's start), not by a sweeper minutes later.
        assert time.monotonic() - started < 20
        assert (task["status"], task["error"]["code"]) == ("failed", "generation_timeout")
        # The worker is free again: the next task runs to the end.
        ok = api_client.post("/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}},
                             format="json").json()  # fmt: skip
        assert poll_terminal(api_client, ok["id"])["status"] == "succeeded"
    assert (task["credits"]["reserved"], task["credits"]["charged"], task["credits"]["released"]) == (3, 0, 3)
    assert wallet_get(account=funded).held == 0


@pytest.fixture
def redis_purged():
    from config.celery import app

    app.control.purge()
    yield
    app.control.purge()


def running_with_progress(task_id: str):
    task = GenerationTask.objects.get(public_id=task_id)
    return task if task.status == "running" and task.progress > 0 else None


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.parametrize(("model", "outcome"), [("test-slow", "failed"), ("test-slow-retry", "succeeded")])
def test_worker_killed_mid_task(api_client, funded, redis_purged, model, outcome):
    body = {"model": model, "input": {"prompt": "x", "seconds": 30}}
    task_id = api_client.post("/api/v1/generations", body, format="json").json()["id"]
    worker = CeleryWorker(extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}).start()
    try:
        wait_for(lambda: running_with_progress(task_id), timeout=60)
        worker.kill()
    finally:
        worker.stop()
    # The worker is gone for good; the sweeper notices the lapsed heartbeat.
    GenerationTask.objects.filter(public_id=task_id).update(input={"prompt": "x", "seconds": 0})
    sweeps.generations_sweep(now=timezone.now() + timedelta(minutes=5))
    if outcome == "succeeded":
        with CeleryWorker(extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}):
            task = poll_terminal(api_client, task_id)
    else:
        task = api_client.get(f"/api/v1/generations/{task_id}").json()
    assert task["status"] == outcome
    hold = Hold.objects.get(reference=task_id)
    assert hold.state == ("settled" if outcome == "succeeded" else "released")
    charged = [e for e in wallet_entries(account=funded) if e.reference == task_id and e.type == "settle"]
    assert len(charged) == (1 if outcome == "succeeded" else 0)
    assert wallet_get(account=funded).held == 0


@pytest.mark.redis
@pytest.mark.postgres
def test_purged_queue_every_task_still_runs(api_client, funded, redis_purged):
    from config.celery import app

    ids = [
        api_client.post(
            "/api/v1/generations", {"model": "rivya-image-1", "input": {"prompt": f"p{i}"}}, format="json"
        ).json()["id"]
        for i in range(3)
    ]
    app.control.purge()  # Redis lost the messages (it keeps nothing on disk here)
    with CeleryWorker(extra_env={"DJANGO_SETTINGS_MODULE": "tests.worker_settings"}):
        sweeps.generations_sweep(now=timezone.now() + timedelta(minutes=5))
        tasks = [poll_terminal(api_client, task_id) for task_id in ids]
    assert [t["status"] for t in tasks] == ["succeeded"] * 3


@pytest.mark.postgres
@pytest.mark.usefixtures("in_process_executor")
def test_fifty_submissions_against_credits_for_twenty(account, make_api_client):
    credits_grant(account=account, amount=80, reference="race")  # test-image costs 4: room for 20
    clients = [make_api_client(account) for _ in range(50)]
    barrier = threading.Barrier(50)
    statuses: list[int] = []

    def submit(client: APIClient) -> None:
        try:
            barrier.wait()
            response = client.post(
                "/api/v1/generations", {"model": "test-image", "input": {"prompt": "x"}}, format="json"
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] * 20 + [402] * 30
    assert GenerationTask.objects.count() == 20
    wait_for(lambda: not GenerationTask.objects.exclude(status="succeeded").exists(), timeout=120)
    wallet = wallet_get(account=account)
    assert (wallet.balance, wallet.held) == (0, 0)
