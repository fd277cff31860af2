"""A generation's success sent as one query (``pg_finish``) against the plain path.

Twin tasks finish with ``GENERATION_FINISH_BATCHED`` on and off, every way a finish can go (a
success with no, one or two outputs, a free task, a lost claim, an asked cancel, a lapsed lease,
an account with a webhook endpoint), and must leave the same task row, outputs, links, events,
deliveries, hold, wallet and ledger entries. On SQLite (and with the switch off) the plain path
runs either way. On PostgreSQL: the finish is one query, it runs at READ COMMITTED whatever the
connection's default, a failure inside it falls back, and it is raced with a cancel, a sweep's
fail and a superseding run: one outcome, one ledger operation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError, connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rivya_api.files.models import File
from rivya_api.generations import finishing, pg_finish, services, sweeps
from rivya_api.generations.exceptions import GenerationNotCancelableError
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers import OutputFile
from rivya_billing import services as billing
from rivya_billing.models import Hold, LedgerEntry, Wallet
from rivya_webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.rivya_api.chat.test_pg_commit_batch import fail_the_first_flush
from tests.rivya_api.generations.fakes import GENERATION_MODELS, LOCAL, model
from tests.rivya_api.generations.test_mark_succeeded import PIXEL, UNCOMPARED, UNCOMPARED_EVENT
from tests.rivya_billing.concurrency import committed_meanwhile, run_concurrently
from tests.transactions import default_isolation

FREE = model("test-free", f"{LOCAL}.LocalImageProvider", price=0)
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings(
        {"RIVYA_API": {"MODELS": [*GENERATION_MODELS, FREE], "GENERATION_PROVIDER_PROCESS": False}}
    ),
]
FILE_UNCOMPARED = {"id", "public_id", "account_id", "storage_name", "created_at", "expires_at"}
TWO = [OutputFile(filename="b.png", content_type="image/png", data=PIXEL.data), PIXEL]


def _lost_claim(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(attempts=task.attempts + 1)


def _cancel_asked(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(cancel_requested=True)


def _other_token(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(hold_token=(task.hold_token or 0) + 1)


def _ended(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(status=GenerationTask.Status.FAILED)


def _bumped(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(event_sequence=F("event_sequence") + 1)


def _lease_lapsed(task: GenerationTask) -> None:
    Hold.objects.filter(reference=task.public_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def _endpoint(task: GenerationTask) -> None:
    now = timezone.now()
    WebhookEndpoint.objects.create(
        account_id=task.account_id,
        url="https://hooks.example.com/rivya",
        event_types=["*"],
        secret_encrypted="x",
        created_at=now,
        updated_at=now,
    )


# name: (model, outputs, what happens between the claim and the finish, whether the batch writes it)
CASES = {
    "none": ("test-image", [], None, True),
    "one": ("test-image", [PIXEL], None, True),
    "two": ("test-image", TWO, None, True),
    "free": ("test-free", [PIXEL], None, True),
    "lost": ("test-image", [PIXEL], _lost_claim, False),
    "canceled": ("test-image", [PIXEL], _cancel_asked, False),
    "lapsed": ("test-image", [PIXEL], _lease_lapsed, False),
    "token": ("test-image", [PIXEL], _other_token, False),  # the settle's lease token is the run's: it would settle
    "token-free": ("test-free", [PIXEL], _other_token, False),
    "bumped": ("test-image", [PIXEL], _bumped, False),  # the plain path succeeds after the sequence it finds
    "ended": ("test-image", [PIXEL], _ended, False),  # its sequence unchanged: only the status says
    "endpoint": ("test-image", [PIXEL], _endpoint, False),
}


REFUSED = {"lost", "token", "token-free", "ended"}  # no longer this run's: nothing written either way


def spy(monkeypatch: Any) -> list[bool]:
    """Whether each ``succeed_batched`` wrote the success (True) or left it to the plain path."""
    calls: list[bool] = []
    real = pg_finish.succeed_batched

    def spied(*args: Any) -> Any:
        result = real(*args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(pg_finish, "succeed_batched", spied)
    return calls


def started(account: Any, model_id: str = "test-image") -> GenerationTask:
    task = services.generation_create(account=account, model_id=model_id, input={"prompt": "a red fox"})
    return services.generation_start(task_pk=task.pk)


def written(account: Any, task: GenerationTask, done: Any) -> tuple[Any, ...]:
    """What a finish left, but ids and times: its result, the task, outputs, events, money."""
    stored = GenerationTask.objects.get(pk=task.pk)
    links = GenerationTask.outputs.through.objects.filter(generationtask=stored).order_by("pk")
    files = [File.objects.filter(pk=link.file_id).values().get() for link in links]
    if done is not None:
        assert sorted(file.pk for file in done.outputs.all()) == sorted(f["id"] for f in files)
    events = [
        (e.type, {k: len(v) if k == "outputs" else v for k, v in e.data.items() if k not in UNCOMPARED_EVENT})
        for e in WebhookEvent.objects.filter(account=account).order_by("pk")
    ]
    holds = [(h.state, h.amount, h.captured) for h in Hold.objects.filter(reference=task.public_id)]
    wallet = Wallet.objects.get(account=account)
    entries = LedgerEntry.objects.filter(wallet=wallet).order_by("sequence")
    return (
        done is not None and (done.status, done.charged, done.event_sequence),
        {f.attname: getattr(stored, f.attname) for f in GenerationTask._meta.concrete_fields}
        | dict.fromkeys(UNCOMPARED),
        [{k: v for k, v in file.items() if k not in FILE_UNCOMPARED} for file in files],
        events,
        WebhookDelivery.objects.filter(event__account=account).count(),
        holds,
        (wallet.balance, wallet.held),
        [(e.type, e.amount, e.balance_after, e.held_after) for e in entries],
    )


def finish_case(account: Any, name: str) -> tuple[Any, ...]:
    model_id, outputs, meanwhile, _ = CASES[name]
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = started(account, model_id)
    if meanwhile:
        meanwhile(task)
    done = finishing.generation_succeed(task=task, outputs=outputs)
    return written(account, task, done)


@pytest.mark.parametrize("name", CASES)
def test_the_batch_leaves_what_the_plain_path_leaves(make_account, monkeypatch, rivya_settings, name):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    calls = spy(monkeypatch)
    rivya_settings("RIVYA_API", GENERATION_FINISH_BATCHED=True)
    batched = finish_case(make_account(), name)
    on_postgresql = connection.vendor == "postgresql"
    assert calls == ([CASES[name][3]] if on_postgresql else [])
    rivya_settings("RIVYA_API", GENERATION_FINISH_BATCHED=False)
    plain = finish_case(make_account(), name)
    assert len(calls) == (1 if on_postgresql else 0)  # the switch off: no batch
    assert batched == plain
    expected = {"canceled": "canceled", "lapsed": "failed"}.get(name, False if name in REFUSED else "succeeded")
    assert (batched[0] or (False,))[0] == expected


@pytest.mark.postgres
def test_a_success_is_one_query_in_one_transaction(account, monkeypatch):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = started(account)
    with CaptureQueriesContext(connection) as queries:
        done = finishing.generation_succeed(task=task, outputs=[PIXEL])
    assert done.status == "succeeded"
    sent = [query["sql"] for query in queries.captured_queries]
    assert len(sent) == 1, sent
    assert sent[0].startswith("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT NOT EXISTS")
    assert " FOR UPDATE OF g; WITH c AS" in sent[0]
    assert "; COMMIT" in sent[0]
    assert [file.pk is not None for file in done.outputs.all()] == [True]
    assert WebhookEvent.objects.get(account=account).data["sequence"] == done.event_sequence


@pytest.mark.postgres
def test_a_failure_inside_the_batch_falls_back_to_the_plain_path(account, monkeypatch, caplog):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    calls = spy(monkeypatch)
    real = pg_finish._batch
    monkeypatch.setattr(pg_finish, "_batch", lambda *a: real(*a).replace(" FOR UPDATE", " AND 1/0 = 0 FOR UPDATE", 1))
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = started(account)
    done = finishing.generation_succeed(task=task, outputs=[PIXEL])
    assert (calls, done.status, done.charged) == ([False], "succeeded", 4)
    assert "finish batch failed (SQLSTATE 22012)" in caplog.text
    assert [e.type for e in LedgerEntry.objects.filter(reference=task.public_id)] == ["reserve", "settle"]
    assert WebhookEvent.objects.filter(account=account, type="generation.succeeded").count() == 1


@pytest.mark.postgres
def test_the_batch_runs_at_read_committed_whatever_the_default(account, monkeypatch):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    calls = spy(monkeypatch)
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = started(account)
    with default_isolation("repeatable read"):
        done = committed_meanwhile(lambda: GenerationTask.objects.filter(pk=task.pk).update(progress=F("progress")))
        finished = finishing.generation_succeed(task=task, outputs=[])
        assert done.wait(10)
    assert (calls, finished.status) == ([True], "succeeded")


@pytest.mark.postgres
def test_an_error_after_the_commit_is_raised_and_the_success_kept(account, monkeypatch):
    """Not taken for a refusal: the success is committed, its outputs kept, the error raised (the
    runner then finds the task no longer running and leaves it succeeded)."""
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    calls = spy(monkeypatch)
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = started(account)
    fail_the_first_flush(monkeypatch)
    with pytest.raises(DataError, match="division by zero"):
        finishing.generation_succeed(task=task, outputs=[PIXEL])
    assert calls == []  # raised out of succeed_batched
    assert connection.connection.info.transaction_status == 0  # idle
    stored = GenerationTask.objects.get(pk=task.pk)
    assert (stored.status, stored.charged, stored.outputs.count()) == ("succeeded", 4, 1)
    assert [e.type for e in LedgerEntry.objects.filter(reference=task.public_id)] == ["reserve", "settle"]
    assert (
        finishing.generation_fail(
            task_pk=task.pk, code="internal_error", message="x", claim=(task.hold_token, task.attempts)
        )
        is None
    )


def _cancel(task: GenerationTask) -> Any:
    return services.generation_cancel(account=task.account, task_id=task.public_id)


def _sweep_fail(task: GenerationTask) -> Any:
    return finishing.generation_fail(task_pk=task.pk, code="worker_lost", message="The worker stopped.")


def _supersede(task: GenerationTask) -> Any:
    return sweeps.generation_recover(task_pk=task.pk)  # re-queued for another run (safe to retry)


RIVALS = {"cancel": _cancel, "sweep-fail": _sweep_fail, "superseded": _supersede}


@pytest.mark.postgres
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "plain"])
@pytest.mark.parametrize("rival", RIVALS)
def test_a_finish_raced_leaves_one_outcome_and_one_ledger_operation(
    make_account, monkeypatch, rivya_settings, rival, batched
):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    rivya_settings("RIVYA_API", GENERATION_FINISH_BATCHED=batched)
    outcomes = set()
    for _ in range(6):
        account = make_account()
        billing.credits_grant(account=account, amount=100, reference="grant")
        task = started(account, "test-slow-retry")
        run = run_concurrently(
            2, lambda i, task=task: RIVALS[rival](task) if i else finishing.generation_succeed(task=task, outputs=[])
        )
        assert run.unexpected(GenerationNotCancelableError) == []  # a cancel after the success: a 409
        stored = GenerationTask.objects.get(pk=task.pk)
        if stored.status == "queued":  # superseded: the next run finishes it
            outcomes.add("requeued")
            assert services.generation_run(task_pk=task.pk).status == "succeeded"
            stored = GenerationTask.objects.get(pk=task.pk)
        types = [e.type for e in LedgerEntry.objects.filter(reference=task.public_id).order_by("sequence")]
        terminal = [e.type for e in WebhookEvent.objects.filter(account=account).order_by("pk")]
        outcomes.add(stored.status)
        if stored.status == "succeeded":
            assert (types, stored.charged, stored.refunded) == (["reserve", "settle"], 2, 0)
        else:
            assert stored.status == {"cancel": "canceled", "sweep-fail": "failed"}[rival]
            assert (types, stored.charged, stored.refunded) == (["reserve", "release"], 0, 2)
        assert terminal == [f"generation.{stored.status}"]
        hold = Hold.objects.get(reference=task.public_id)
        assert (hold.state, hold.captured) == (("settled", 2) if stored.status == "succeeded" else ("released", 0))
    assert outcomes <= {"succeeded", "canceled", "failed", "requeued"}


@pytest.mark.postgres
@pytest.mark.parametrize("unwritten", ["task", "event"])
def test_a_settle_without_the_success_or_the_event_fails_the_batch(account, monkeypatch, caplog, unwritten):
    """The batch's check: were the task's UPDATE or the event's INSERT to write nothing after the
    settle wrote, the statement fails (nothing commits) and the plain path settles once."""
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    calls = spy(monkeypatch)
    real = pg_finish._batch

    def batch(*args: Any) -> str:
        head, tail = real(*args).split(" e AS (")  # the event's INSERT is in the tail, the task's UPDATE before
        if unwritten == "task":
            return head.replace(" FROM ok WHERE g.", " FROM ok WHERE false AND g.") + " e AS (" + tail
        return head + " e AS (" + tail.replace(" FROM ok RETURNING", " FROM ok WHERE false RETURNING", 1)

    monkeypatch.setattr(pg_finish, "_batch", batch)
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = started(account)
    done = finishing.generation_succeed(task=task, outputs=[PIXEL])
    assert (calls, done.status, done.charged) == ([False], "succeeded", 4)
    assert "finish batch failed (SQLSTATE 22P02)" in caplog.text
    assert [e.type for e in LedgerEntry.objects.filter(reference=task.public_id)] == ["reserve", "settle"]
    assert WebhookEvent.objects.filter(account=account, type="generation.succeeded").count() == 1
