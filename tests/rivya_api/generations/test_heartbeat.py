"""The heartbeat thread of a running generation outlives a failed beat: it logs it, drops its
connection (a lost one, as after a failover, would fail every later beat) and beats again, so a
long job with sparse progress is not taken for a dead worker's. SQLite, and PostgreSQL in CI."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db import connection as django_connection
from django.utils import timezone

from rivya_api.generations import services
from rivya_api.generations.models import GenerationTask
from rivya_billing.services import credits_grant
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}}),
]


def test_a_failed_beat_is_logged_and_the_next_one_renews_the_heartbeat(account, rivya_settings, monkeypatch, caplog):
    rivya_settings("RIVYA_API", GENERATION_HEARTBEAT_INTERVAL=timedelta(seconds=0.05))
    credits_grant(account=account, amount=100, reference="grant")
    task = services.generation_create(account=account, model_id="test-slow", input={"prompt": "x"})
    services.generation_start(task_pk=task.pk)
    old = timezone.now() - timedelta(minutes=10)
    GenerationTask.objects.filter(pk=task.pk).update(heartbeat_at=old)
    task = GenerationTask.objects.get(pk=task.pk)

    failures = [OperationalError("server closed the connection unexpectedly")]
    closes = []

    def now():
        if failures:
            raise failures.pop()
        return timezone.now()

    class Connection:
        def close(self):
            closes.append(1)
            django_connection.close()

    monkeypatch.setattr(services, "_now", now)
    monkeypatch.setattr(services, "connection", Connection())
    with caplog.at_level(logging.WARNING, logger=services.__name__), services._Heartbeat(task):
        deadline = time.monotonic() + 10
        while GenerationTask.objects.get(pk=task.pk).heartbeat_at == old and time.monotonic() < deadline:
            time.sleep(0.05)

    assert GenerationTask.objects.get(pk=task.pk).heartbeat_at > old
    assert failures == []
    assert [record.levelno for record in caplog.records if "Heartbeat" in record.getMessage()] == [logging.WARNING]
    assert len(closes) >= 2  # after the failed beat, and when the thread ends
