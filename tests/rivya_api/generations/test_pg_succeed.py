"""A success's outputs, mark and links in one statement (``pg_succeed``) against the plain path.

Both paths finish twin tasks with the same outputs (none, one, two): the same file rows, the same
links in the same order, the same task row, event, hold and wallet; the instances the caller
keeps have their primary keys. ``test_mark_succeeded`` runs each way a finish can go (lost
claim, cancel, lapsed lease) through both marks. PostgreSQL only (elsewhere the plain path).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rivya_api.files.models import File
from rivya_api.generations import finishing, services
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers import OutputFile
from rivya_billing import services as billing
from rivya_billing.models import Hold, Wallet
from rivya_webhooks.models import WebhookEvent
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.rivya_api.generations.test_mark_succeeded import PIXEL, UNCOMPARED, UNCOMPARED_EVENT

pytestmark = [
    pytest.mark.postgres,
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
FILE_UNCOMPARED = {"id", "public_id", "account_id", "storage_name", "created_at", "expires_at"}
OUTPUTS = {
    "none": [],
    "one": [PIXEL],
    "two": [OutputFile(filename="b.png", content_type="image/png", data=PIXEL.data), PIXEL],
}


def succeed(account: Any, outputs: list[OutputFile]) -> tuple[Any, list[str]]:
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
    task = services.generation_start(task_pk=task.pk)
    with CaptureQueriesContext(connection) as queries:
        done = finishing.generation_succeed(task=task, outputs=outputs)
    assert done is not None
    stored = GenerationTask.objects.get(pk=task.pk)
    linked = list(GenerationTask.outputs.through.objects.filter(generationtask=stored).order_by("pk"))
    files = [File.objects.filter(pk=link.file_id).values().get() for link in linked]
    assert [file.pk for file in done.outputs.all().order_by("pk")] == sorted(f["id"] for f in files)
    assert all(not file._state.adding for file in done.outputs.all())
    event = WebhookEvent.objects.get(account=account, type="generation.succeeded")
    hold = Hold.objects.get(reference=task.public_id)
    wallet = Wallet.objects.get(account=account)
    columns = [f.attname for f in GenerationTask._meta.concrete_fields if f.attname not in UNCOMPARED]
    result = (
        {name: getattr(stored, name) for name in columns},
        [{k: v for k, v in file.items() if k not in FILE_UNCOMPARED} for file in files],
        {k: len(v) if k == "outputs" else v for k, v in event.data.items() if k not in UNCOMPARED_EVENT | {"id"}},
        [output["filename"] for output in event.data["outputs"]],
        (hold.state, hold.captured, wallet.balance, wallet.held),
    )
    return result, [q["sql"] for q in queries.captured_queries]


@pytest.mark.parametrize("outputs", OUTPUTS)
def test_one_statement_leaves_what_the_plain_path_leaves(make_account, monkeypatch, rivya_settings, outputs):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    rivya_settings("RIVYA_API", GENERATION_SUCCEED_SQL=True)
    fast, fast_queries = succeed(make_account(), OUTPUTS[outputs])
    rivya_settings("RIVYA_API", GENERATION_SUCCEED_SQL=False)
    plain, plain_queries = succeed(make_account(), OUTPUTS[outputs])
    assert fast == plain
    assert fast[0]["status"] == "succeeded"
    assert [file["filename"] for file in fast[1]] == [output.filename for output in OUTPUTS[outputs]]
    # The files' INSERT (when there are outputs), the mark and the links: one statement, not up to three.
    assert len(plain_queries) - len(fast_queries) == (2 if outputs != "none" else 0)


def test_the_files_get_their_rows_primary_keys(make_account, monkeypatch):
    from django.db import transaction

    from rivya_api.files.services import file_store
    from rivya_api.generations import pg_succeed

    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    account = make_account()
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
    task = services.generation_start(task_pk=task.pk)
    files = [
        file_store(account=account, content=PIXEL.data, filename=f"{n}.png", purpose="generation_output")
        for n in range(3)
    ]
    with transaction.atomic():
        assert pg_succeed.insert_and_mark(task, files, task.started_at)
    for file in files:
        assert File.objects.get(public_id=file.public_id).pk == file.pk
        assert (file._state.adding, file._state.db) == (False, "default")
    assert list(GenerationTask.objects.get(pk=task.pk).outputs.order_by("pk")) == files


def test_more_outputs_than_its_limit_take_the_plain_path(make_account, monkeypatch, rivya_settings):
    """One statement is built and kept per output count: a count above MAX_OUTPUTS (the provider
    decides it) takes the plain path, whose result is the same."""
    from rivya_api.generations import pg_succeed

    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    monkeypatch.setattr(pg_succeed, "MAX_OUTPUTS", 1)
    assert pg_succeed.enabled(1)
    assert not pg_succeed.enabled(2)
    rivya_settings("RIVYA_API", GENERATION_SUCCEED_SQL=False)
    plain, plain_queries = succeed(make_account(), OUTPUTS["two"])
    rivya_settings("RIVYA_API", GENERATION_SUCCEED_SQL=True)
    over, over_queries = succeed(make_account(), OUTPUTS["two"])
    assert over == plain
    assert len(over_queries) == len(plain_queries)
