"""How many database transactions a generation costs on its happy path (issue 25: at most three a job).

Counted on the real commits (``tests.transactions``), on every database. The job, from the
worker's claim to its settled success with its event and live update queued: the claim and the
finish, plus on PostgreSQL the WAL flush of early lock release after the finish's wallet write
(``rivya_billing.services.durability``: one tiny transaction that touches no row). The accept
(``POST /api/v1/generations``) is one transaction, plus that flush after its reservation.
A change that adds a transaction fails here with the list of what each one ran.
"""

from __future__ import annotations

import time

import pytest

from rivya_api.generations import services
from rivya_billing.services import credits_grant
from rivya_billing.services.durability import early_release
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.transactions import count_transactions

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}}),
]


def flushes() -> int:
    """The WAL flush after a wallet write's commit: PostgreSQL with early lock release only."""
    return 1 if early_release() else 0


@pytest.fixture
def funded(account, monkeypatch):
    """A funded account whose jobs are run here, not by a worker (embedded: the in-process one)."""
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    credits_grant(account=account, amount=100, reference="test-grant")
    return account


PROGRESS_WRITE = 'UPDATE "rivya_api_generationtask" SET "progress"'


def test_a_job_from_claim_to_settled_success_takes_two_transactions_and_the_flush(funded):
    task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "a red fox"})
    started = time.monotonic()
    with count_transactions() as job:
        done = services.generation_run(task_pk=task.pk)
    seconds = time.monotonic() - started
    assert done.status == "succeeded"
    assert (done.charged, done.outputs.count()) == (4, 1)
    assert [event.type for event in WebhookEvent.objects.filter(account=funded)] == ["generation.succeeded"]
    # On a loaded machine the job can outlast a second and write its progress once a second: not the happy path's.
    progress = [t for t in job.committed if any(sql.startswith(PROGRESS_WRITE) for sql in t)]
    assert len(progress) <= int(seconds), job.describe()
    assert len(job) - len(progress) == 2 + flushes() <= 3, job.describe()
    assert not job.rolled_back, job.rolled_back


def test_accepting_a_job_over_the_api_is_one_transaction_and_the_flush(funded, make_api_client):
    client = make_api_client(funded)
    body = {"model": "test-image", "input": {"prompt": "a red fox"}}
    client.post("/api/v1/generations", body, format="json")  # the key's first use and caches are not counted
    with count_transactions() as accept:
        response = client.post("/api/v1/generations", body, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["outputs"] == []
    # Without a shared cache (embedded) the key is looked up in the database: a read of its own.
    key_lookups = [t for t in accept.committed if len(t) == 1 and t[0].startswith('SELECT "rivya_api_apikey"')]
    assert len(accept) - len(key_lookups) == 1 + flushes(), accept.describe()
    assert len(key_lookups) <= 1, accept.describe()


def test_a_job_that_reports_progress_for_longer_writes_it_at_most_once_a_second(funded):
    """The slow model reports progress 15 times in 1.5 s: a write a second, not 15."""
    task = services.generation_create(
        account=funded, model_id="test-slow", input={"prompt": "x", "seconds": 1.5, "width": 64, "height": 64}
    )
    started = time.monotonic()
    with count_transactions() as job:
        done = services.generation_run(task_pk=task.pk)
    seconds = time.monotonic() - started
    assert done.status == "succeeded"
    progress_writes = len(job) - 2 - flushes()
    assert 1 <= progress_writes <= int(seconds), job.describe()


def test_the_counter_counts_commits_not_statements_or_savepoints(funded):
    from django.db import transaction

    from rivya_api.generations.models import GenerationTask

    task = services.generation_create(account=funded, model_id="test-image", input={"prompt": "x"})
    tasks = GenerationTask.objects.filter(pk=task.pk)
    with count_transactions() as log:
        tasks.update(progress=1)  # autocommit: one
        with transaction.atomic():  # one, whatever it runs
            tasks.update(progress=2)
            with transaction.atomic():
                tasks.update(progress=3)
        with transaction.atomic():
            tasks.update(progress=4)
            transaction.set_rollback(True)
    assert len(log) == 2, log.describe()
    assert sum("SAVEPOINT" in sql for sql in log.committed[1]) == 2  # inside the one transaction
    assert len(log.rolled_back) == 1
