"""A success is written by one conditional UPDATE of the task (``finishing._mark_succeeded``), the
row lock and the decision of the locking read (``_lock_running``) being the path for everything
else. Each way a finish can go ends the same whichever path takes it: a success, a run that lost
its claim, a cancel asked meanwhile, and a hold whose lease lapsed (the sweeper expired it: the
success written first is rolled back and the locking read fails the task as the run left it, its
last reported progress included, released, with one event). Only a lost claim, a cancel or a
lapsed lease take the locking read. Every database."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from rivya_api.generations import finishing, services
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers import OutputFile
from rivya_billing import services as billing
from rivya_billing.models import Hold
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.generations.fakes import GENERATION_MODELS

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The statements one by one: the batch (pg_finish, its own tests) would send the finish as one query.
    pytest.mark.rivya_settings(
        {
            "RIVYA_API": {
                "MODELS": GENERATION_MODELS,
                "GENERATION_PROVIDER_PROCESS": False,
                "GENERATION_FINISH_BATCHED": False,
            }
        }
    ),
]
# A valid 1x1 PNG, so the output passes the files app's checks.
PIXEL = OutputFile(
    filename="a.png",
    content_type="image/png",
    data=base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    ),
)
UNCOMPARED = {"id", "public_id", "account_id", "created_at", "queued_at", "expires_at", "started_at"}
UNCOMPARED |= {"heartbeat_at", "deadline_at", "completed_at"}
UNCOMPARED_EVENT = {"id", "created_at", "started_at", "completed_at", "expires_at"}


def _lost_claim(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(attempts=task.attempts + 1)


def _cancel_asked(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(cancel_requested=True)


def _lease_lapsed(task: GenerationTask) -> None:
    GenerationTask.objects.filter(pk=task.pk).update(progress=60)  # what the run reported last
    Hold.objects.filter(reference=task.public_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    billing.credits_expire_lapsed_holds()


def finish(account: Any, meanwhile: Any) -> Any:
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
    task = services.generation_start(task_pk=task.pk)
    if meanwhile:
        meanwhile(task)
    locking_reads = []
    lock_running = finishing._lock_running

    def counted(*args: Any) -> Any:
        locking_reads.append(args)
        return lock_running(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(finishing, "_lock_running", counted)
        done = finishing.generation_succeed(task=task, outputs=[PIXEL])
    stored = GenerationTask.objects.get(pk=task.pk)
    row = {f.attname: getattr(stored, f.attname) for f in GenerationTask._meta.concrete_fields}
    events = [
        (e.type, {k: len(v) if k == "outputs" else v for k, v in e.data.items() if k not in UNCOMPARED_EVENT})
        for e in WebhookEvent.objects.filter(account=account)
    ]
    hold = Hold.objects.get(reference=task.public_id)
    return (
        done is not None and done.status,
        {name: value for name, value in row.items() if name not in UNCOMPARED},
        stored.outputs.count(),
        events,
        (hold.state, hold.captured),
    ), len(locking_reads)


@pytest.mark.parametrize(
    "meanwhile", [None, _lost_claim, _cancel_asked, _lease_lapsed], ids=["success", "lost", "canceled", "lapsed"]
)
@pytest.mark.parametrize("succeed_sql", [True, False], ids=["pg_succeed", "orm-mark"])
def test_the_conditional_update_ends_a_finish_as_the_locking_read_does(
    make_account, monkeypatch, rivya_settings, meanwhile, succeed_sql
):
    """``succeed_sql``: the mark is ``pg_succeed``'s statement (PostgreSQL; elsewhere the ORM's
    mark either way), else ``_mark_succeeded``'s UPDATE."""
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    plain_account, fast_account = make_account(), make_account()
    for account in (plain_account, fast_account):
        billing.credits_grant(account=account, amount=100, reference="grant")
    rivya_settings("RIVYA_API", GENERATION_SUCCEED_SQL=succeed_sql)
    fast, fast_locking_reads = finish(fast_account, meanwhile)
    rivya_settings("RIVYA_API", GENERATION_SUCCEED_SQL=False)
    monkeypatch.setattr(finishing, "_mark_succeeded", lambda task, completed_at: False)
    plain, plain_locking_reads = finish(plain_account, meanwhile)
    assert fast == plain
    expected = {None: "succeeded", _lost_claim: False, _cancel_asked: "canceled", _lease_lapsed: "failed"}[meanwhile]
    assert fast[0] == expected
    assert (fast_locking_reads, plain_locking_reads) == (0 if meanwhile is None else 1, 1)
    if meanwhile is _lease_lapsed:
        assert (fast[1]["progress"], fast[1]["error_code"]) == (60, "hold_expired")
