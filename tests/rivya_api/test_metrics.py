"""Prometheus metrics: who may read /metrics, what a request and a task record, and several processes adding up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import shared_task
from django.core.files.uploadedfile import SimpleUploadedFile
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from rivya_api import metrics
from tests import media
from tests.rivya_api.generations.fakes import GENERATION_MODELS

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-test-token"

pytestmark = pytest.mark.django_db


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


@pytest.fixture
def metrics_token(rivya_settings):
    rivya_settings("RIVYA_API", METRICS_TOKEN=TOKEN)


def test_metrics_do_not_exist_without_a_token(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


@pytest.mark.usefixtures("metrics_token")
@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_metrics_refuse_anything_but_the_token(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"rivya_" not in response.content


@pytest.mark.usefixtures("metrics_token")
def test_requests_are_counted_by_url_pattern_and_status(client, api_client):
    upload = SimpleUploadedFile("a.png", media.png(), content_type="image/png")
    file_id = api_client.post("/api/v1/files", {"file": upload, "purpose": "reference"}, format="multipart").json()[
        "id"
    ]
    route = "/api/v1/files/<str:file_id>"
    before_ok = sample("rivya_http_requests_total", method="GET", route=route, status="200")
    before_404 = sample("rivya_http_requests_total", method="GET", route=route, status="404")
    before_count = sample("rivya_http_request_duration_seconds_count", method="GET", route=route)

    assert api_client.get(f"/api/v1/files/{file_id}").status_code == 200
    assert api_client.get("/api/v1/files/file_doesnotexist").status_code == 404
    assert client.get("/no/such/page").status_code == 404

    scraped = scrape(client)
    assert scraped[("rivya_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == (
        before_ok + 1
    )
    assert scraped[("rivya_http_requests_total", (("method", "GET"), ("route", route), ("status", "404")))] == (
        before_404 + 1
    )
    assert scraped[("rivya_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))] == (
        before_count + 2
    )
    # Raw paths (ids, unknown URLs) never become label values.
    labels = {dict(key[1]).get("route") for key in scraped}
    assert not any(file_id in (label or "") for label in labels)
    assert "/no/such/page" not in labels
    assert metrics.UNMATCHED_ROUTE in labels


@shared_task(name="tests.metrics_probe")
def metrics_probe(fail: bool = False) -> str:
    if fail:
        raise ValueError("probe failed on purpose")
    return "ok"


def test_celery_tasks_record_state_and_run_time():
    before_ok = sample("rivya_celery_tasks_total", task="tests.metrics_probe", state="SUCCESS")
    before_failed = sample("rivya_celery_tasks_total", task="tests.metrics_probe", state="FAILURE")
    before_runs = sample("rivya_celery_task_run_seconds_count", task="tests.metrics_probe", state="SUCCESS")

    # apply() runs the task here with the same prerun/postrun signals a worker sends.
    assert metrics_probe.apply().get() == "ok"
    metrics_probe.apply(kwargs={"fail": True})

    assert sample("rivya_celery_tasks_total", task="tests.metrics_probe", state="SUCCESS") == before_ok + 1
    assert sample("rivya_celery_tasks_total", task="tests.metrics_probe", state="FAILURE") == before_failed + 1
    assert sample("rivya_celery_task_run_seconds_count", task="tests.metrics_probe", state="SUCCESS") == (
        before_runs + 1
    )


def test_queue_wait_is_measured_from_the_publish_header():
    before = sample("rivya_celery_task_queue_wait_seconds_count", task="tests.metrics_probe")
    headers: dict = {}
    metrics._on_before_task_publish(sender="tests.metrics_probe", headers=headers)
    assert isinstance(headers[metrics.PUBLISHED_AT_HEADER], float)
    # A worker sees custom message headers as attributes of task.request.
    metrics_probe.apply(headers={metrics.PUBLISHED_AT_HEADER: headers[metrics.PUBLISHED_AT_HEADER] - 2.0})
    assert sample("rivya_celery_task_queue_wait_seconds_count", task="tests.metrics_probe") == before + 1
    assert sample("rivya_celery_task_queue_wait_seconds_bucket", task="tests.metrics_probe", le="1.0") == before


def test_sse_streams_open_gauge_goes_up_and_down():
    def value() -> float:
        return sample("rivya_sse_streams_open", stream="test")

    def stream_that_breaks() -> None:
        with metrics.sse_stream_open(stream="test"):
            assert value() == start + 2
            raise RuntimeError("client went away")

    start = value()
    with metrics.sse_stream_open(stream="test"):
        assert value() == start + 1
        with pytest.raises(RuntimeError):
            stream_that_breaks()
        assert value() == start + 1
    assert value() == start


WRITER = """
import os, sys, django
django.setup()
from rivya_api import metrics
for _ in range(int(sys.argv[1])):
    metrics.http_request_observe(method="GET", route="/probe", status=200, seconds=0.01)
metrics.generation_accepted(model="probe-model")
metrics.sse_stream_opened(stream="probe")
print(os.getpid())
"""


def test_several_processes_add_up_and_dead_processes_drop_their_open_streams(tmp_path):
    """Two real processes write into one multiprocess directory; a reader sees their sum."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
    }
    pids = [
        int(subprocess.run([sys.executable, "-c", WRITER, str(n)], env=env, cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip())
        for n in (3, 4)
    ]  # fmt: skip
    reader = """
import json, django
django.setup()
from prometheus_client.parser import text_string_to_metric_families
from rivya_api import metrics
body, _ = metrics.metrics_text()
print(json.dumps({f"{s.name}{sorted(s.labels.items())}": s.value
                  for f in text_string_to_metric_families(body.decode()) for s in f.samples}))
"""

    def read() -> dict[str, float]:
        done = subprocess.run([sys.executable, "-c", reader], env=env, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    values = read()
    assert values["rivya_http_requests_total[('method', 'GET'), ('route', '/probe'), ('status', '200')]"] == 7
    assert values["rivya_generations_total[('model', 'probe-model'), ('status', 'accepted')]"] == 2
    assert values["rivya_sse_streams_open[('stream', 'probe')]"] == 2

    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pids[0], str(shared))
    values = read()
    assert values["rivya_sse_streams_open[('stream', 'probe')]"] == 1
    # Counters of a process that has gone keep counting in the totals.
    assert values["rivya_http_requests_total[('method', 'GET'), ('route', '/probe'), ('status', '200')]"] == 7


@pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})
def test_a_generation_records_its_status_queue_wait_run_time_and_ledger_operations(
    account, django_capture_on_commit_callbacks
):
    from rivya_api.generations import services
    from rivya_billing.services import credits_grant

    def figures() -> dict[str, float]:
        return {
            "accepted": sample("rivya_generations_total", model="test-image", status="accepted"),
            "succeeded": sample("rivya_generations_total", model="test-image", status="succeeded"),
            "waits": sample("rivya_generation_queue_wait_seconds_count", model="test-image"),
            "runs": sample("rivya_generation_run_seconds_count", model="test-image", status="succeeded"),
            "reserves": sample("rivya_ledger_operations_total", operation="reserve"),
            "settles": sample("rivya_ledger_operations_total", operation="settle"),
            "settled_credits": sample("rivya_ledger_credits_total", operation="settle"),
        }

    credits_grant(account=account, amount=50, reference="grant")
    before = figures()
    # Metrics count committed work only: nothing is counted until the on-commit callbacks run.
    with django_capture_on_commit_callbacks() as callbacks:
        task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a lighthouse"})
    assert figures() == before
    for callback in callbacks:
        if "enqueue_on_commit" not in callback.__qualname__:  # this test runs the task itself, below
            callback()
    after_accept = figures()
    assert after_accept["accepted"] == before["accepted"] + 1
    assert after_accept["reserves"] == before["reserves"] + 1
    assert after_accept["succeeded"] == before["succeeded"]
    with django_capture_on_commit_callbacks(execute=True):
        services.generation_run(task_pk=task.pk)
    after = figures()
    assert after["succeeded"] == before["succeeded"] + 1
    assert after["waits"] == before["waits"] + 1
    assert after["runs"] == before["runs"] + 1
    assert after["settles"] == before["settles"] + 1
    assert after["settled_credits"] == before["settled_credits"] + task.price


def test_a_rolled_back_ledger_operation_is_not_counted(account):
    from django.db import transaction

    from rivya_billing.services import credits_grant

    def grant_then_abort() -> None:
        with transaction.atomic():
            credits_grant(account=account, amount=5, reference="rolled-back")
            raise RuntimeError("abort")

    before = sample("rivya_ledger_operations_total", operation="grant")
    with pytest.raises(RuntimeError):
        grant_then_abort()
    assert sample("rivya_ledger_operations_total", operation="grant") == before
