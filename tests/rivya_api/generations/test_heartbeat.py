"""The heartbeat thread of a running generation outlives a failed beat: it logs it, drops its
connection (a lost one, as after a failover, would fail every later beat) and beats again, so a
long job with sparse progress is not taken for a dead worker's. SQLite, and PostgreSQL in CI."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db import connection as django_connection
from django.utils import timezone

from rivya_api.generations import heartbeat, services
from rivya_api.generations.models import GenerationTask
from rivya_billing.models import Hold
from rivya_billing.services import credits_grant
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}}),
]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-thread", "thread-per-job"])
def test_a_failed_beat_is_logged_and_the_next_one_renews_the_heartbeat(
    account, rivya_settings, monkeypatch, caplog, shared
):
    rivya_settings(
        "RIVYA_API", GENERATION_HEARTBEAT_INTERVAL=timedelta(seconds=0.05), GENERATION_HEARTBEAT_SHARED=shared
    )
    credits_grant(account=account, amount=100, reference="grant")
    # Run here, not by a worker: without a broker the create's commit hands the job to the
    # in-process executor, which could claim it first and finish it before the first beat (then
    # no beat matches a running task), and would run on into the next test.
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    task = services.generation_create(account=account, model_id="test-slow", input={"prompt": "x"})
    assert services.generation_start(task_pk=task.pk) is not None  # this run's claim, beaten below
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

        def __getattr__(self, name):  # the heartbeat module's other uses (its statement timeout)
            return getattr(django_connection, name)

    monkeypatch.setattr(heartbeat, "_now", now)
    monkeypatch.setattr(heartbeat, "connection", Connection())
    with caplog.at_level(logging.WARNING, logger=heartbeat.__name__), heartbeat._Heartbeat(task):
        deadline = time.monotonic() + 10
        while GenerationTask.objects.get(pk=task.pk).heartbeat_at == old and time.monotonic() < deadline:
            time.sleep(0.05)

    assert GenerationTask.objects.get(pk=task.pk).heartbeat_at > old
    assert failures == []
    assert [record.levelno for record in caplog.records if "Heartbeat" in record.getMessage()] == [logging.WARNING]
    assert len(closes) >= 2  # after the failed beat, and when the thread ends (shared: after each round)


QUICK = timedelta(seconds=0.05)


def _running(account):
    task = services.generation_create(account=account, model_id="test-slow", input={"prompt": "x"})
    return services.generation_start(task_pk=task.pk)


def _beaten(task, since, seconds=10):
    deadline = time.monotonic() + seconds
    while GenerationTask.objects.get(pk=task.pk).heartbeat_at <= since and time.monotonic() < deadline:
        time.sleep(0.02)
    return GenerationTask.objects.get(pk=task.pk).heartbeat_at > since


def test_the_shared_thread_beats_every_job_and_outlives_a_beat_that_raises(account, rivya_settings, monkeypatch):
    """Two jobs at once on one thread, which a beat's unexpected error does not end; a job that
    ended is beaten no more."""
    rivya_settings("RIVYA_API", GENERATION_HEARTBEAT_INTERVAL=timedelta(seconds=0.05), GENERATION_HEARTBEAT_SHARED=True)
    credits_grant(account=account, amount=100, reference="grant")
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)  # run here, not by a worker
    first, second = _running(account), _running(account)
    old = timezone.now() - timedelta(minutes=10)
    GenerationTask.objects.filter(pk__in=[first.pk, second.pk]).update(heartbeat_at=old)
    raised = []

    def renew(task):
        if not raised:
            raised.append(task.pk)
            raise RuntimeError("not a database error")
        return renew_hold(task)

    renew_hold = heartbeat._renew_hold
    monkeypatch.setattr(heartbeat, "_renew_hold", renew)
    with heartbeat._Heartbeat(first), heartbeat._Heartbeat(second):
        thread = heartbeat.thread()
        assert _beaten(first, old)
        assert _beaten(second, old)
    assert raised  # and yet both were beaten
    assert heartbeat.thread() is thread
    assert thread.is_alive()
    time.sleep(0.2)  # a beat under way when the job ended may still land
    ended = GenerationTask.objects.get(pk=first.pk).heartbeat_at
    with heartbeat._Heartbeat(second):
        assert _beaten(second, timezone.now())
    assert heartbeat.thread() is thread  # the same thread for the next job
    assert GenerationTask.objects.get(pk=first.pk).heartbeat_at == ended


@pytest.mark.postgres  # SQLite: the stuck beat's transaction holds the database's one write lock
@pytest.mark.parametrize("shared", [True, False], ids=["shared-thread", "thread-per-job"])
def test_a_stuck_beat_of_one_job_does_not_starve_another_jobs_heartbeat(account, rivya_settings, monkeypatch, shared):
    """A beat that hangs (a blackholed connection after a failover, a long lock wait) holds up
    its own job only: the other job of the process is beaten on time, so the sweeper does not
    take a live job for a dead worker's."""
    rivya_settings("RIVYA_API", GENERATION_HEARTBEAT_INTERVAL=QUICK, GENERATION_HEARTBEAT_SHARED=shared)
    credits_grant(account=account, amount=100, reference="grant")
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    stuck, live = _running(account), _running(account)
    release, hung = threading.Event(), threading.Event()
    renew_hold = heartbeat._renew_hold

    def renew(task):
        if task.pk == stuck.pk:
            hung.set()
            release.wait(5)
        return renew_hold(task)

    monkeypatch.setattr(heartbeat, "_renew_hold", renew)
    try:
        with heartbeat._Heartbeat(stuck), heartbeat._Heartbeat(live):
            assert hung.wait(5)  # the stuck job's first beat is under way
            since = timezone.now()
            beaten = _beaten(live, since, seconds=2)
            release.set()
    finally:
        release.set()
    assert beaten, "the live job was not beaten for 2 s while another job's beat hung"


@pytest.mark.parametrize("shared", [True, False], ids=["shared-thread", "thread-per-job"])
def test_a_job_whose_claim_is_lost_is_logged_once_and_beaten_no_more(
    account, rivya_settings, monkeypatch, caplog, shared
):
    """Its hold's lease lapsed: the renew is refused (StaleHoldError), nothing of the beat is
    written (the sweeper still sees the job dead), one WARNING, and no beat after it."""
    rivya_settings("RIVYA_API", GENERATION_HEARTBEAT_INTERVAL=QUICK, GENERATION_HEARTBEAT_SHARED=shared)
    credits_grant(account=account, amount=100, reference="grant")
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    task = _running(account)
    Hold.objects.filter(reference=task.public_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    old = GenerationTask.objects.get(pk=task.pk).heartbeat_at
    renews = []
    renew_hold = heartbeat._renew_hold
    monkeypatch.setattr(heartbeat, "_renew_hold", lambda task: renews.append(1) or renew_hold(task))
    with caplog.at_level(logging.WARNING), heartbeat._Heartbeat(task):
        time.sleep(0.6)
    assert GenerationTask.objects.get(pk=task.pk).heartbeat_at == old
    assert renews == [1]
    records = [(r.levelno, r.exc_info) for r in caplog.records if "Heartbeat" in r.getMessage() or r.exc_info]
    assert records == [(logging.WARNING, None)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_gets_a_registry_of_its_own():
    """Forked while the parent's registry lock is held (its thread takes it every round): the
    child's lock is a new one, free, and the child has none of the parent's jobs."""
    parent = heartbeat._beater
    key = heartbeat.track(lambda: None, interval=3600, after_round=lambda: None)
    try:
        with parent.lock:
            pid = os.fork()
            if pid == 0:  # the child: nothing here may touch the database or pytest
                child = heartbeat._beater
                ok = child is not parent and child.lock.acquire(timeout=2) and not child.jobs
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        heartbeat.untrack(key)
    assert os.waitstatus_to_exitcode(status) == 0
