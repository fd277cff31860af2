"""The purge runs in a real Celery worker on Redis, as beat queues it in production."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from rivya_api.idempotency import services
from rivya_api.idempotency.models import IdempotencyRecord
from rivya_api.idempotency.tasks import idempotency_records_purge_task
from tests.rivya_api.idempotency.live_server import ROOT, database_url

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(tmp_path):
    from config.celery import app

    hostname = f"rivya-idem-test-{os.getpid()}@{os.uname().nodename}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
        "PYTHONPATH": str(ROOT),
    }
    log_path = tmp_path / "worker.log"
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=1",
        "--without-gossip", "--without-mingle", "--without-heartbeat", f"--hostname={hostname}",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5, destination=[hostname]):
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker did not come up"
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_worker_purges_expired_records(account, worker):
    long_ago = timezone.now() - timedelta(days=2)
    old = services.idempotency_claim(account=account, key="old", fingerprint="f", now=long_ago)
    services.idempotency_complete(record=old.record, status_code=201, headers={}, body=b"{}", now=long_ago)
    services.idempotency_claim(account=account, key="live", fingerprint="f")

    idempotency_records_purge_task.delay()

    deadline = time.monotonic() + 30
    while IdempotencyRecord.objects.filter(key="old").exists():
        assert time.monotonic() < deadline, "the worker never purged the expired record"
        time.sleep(0.1)
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["live"]
