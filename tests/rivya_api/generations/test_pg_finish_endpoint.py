"""``pg_finish`` for accounts with webhook endpoints, and its ``endpoint_seen`` hint; hostile input.

The batch refuses (in SQL) an account with an enabled endpoint: its deliveries are the plain
path's. Refused, a finish pays the batch's round trip and empty commit before the plain path, so
the batch remembers (per process, briefly) accounts it saw with an endpoint and their next finishes
go straight to the plain path: the second finish of such an account costs what the plain path
costs (as on main). The hint is only speed: an endpoint removed or added between finishes still
gets exactly the plain path's deliveries.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rivya_api.generations import finishing, pg_finish, services
from rivya_api.generations.models import GenerationTask
from rivya_billing import services as billing
from rivya_webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.rivya_api.generations.test_mark_succeeded import PIXEL
from tests.rivya_api.generations.test_pg_finish import FREE, _endpoint, spy, started, written

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.rivya_settings(
        {"RIVYA_API": {"MODELS": [*GENERATION_MODELS, FREE], "GENERATION_PROVIDER_PROCESS": False}}
    ),
]
HOSTILE = "a fox'); COMMIT; DROP TABLE x; -- %(pk)s %s $1 \\' \" \u00e9"


@pytest.fixture(autouse=True)
def _no_dispatch(monkeypatch):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)


def finish(account: Any, model_id: str = "test-image") -> GenerationTask:
    task = started(account, model_id)
    return finishing.generation_succeed(task=task, outputs=[PIXEL])


def deliveries(account: Any) -> list[tuple[Any, ...]]:
    """Each event of the account, in order, with its deliveries (endpoint url, state, counts)."""
    return [
        (
            event.type,
            event.data["sequence"],
            [
                (d.endpoint.url, d.state, d.retry_count, d.attempts_count, d.next_trigger)
                for d in WebhookDelivery.objects.filter(event=event).order_by("pk")
            ],
        )
        for event in WebhookEvent.objects.filter(account=account).order_by("pk")
    ]


@pytest.mark.postgres
def test_the_second_finish_of_an_account_with_an_endpoint_costs_what_the_plain_path_costs(
    make_account, monkeypatch, rivya_settings
):
    calls = spy(monkeypatch)
    counts = []
    for batched in (True, False):
        rivya_settings("RIVYA_API", GENERATION_FINISH_BATCHED=batched)
        account = make_account()
        billing.credits_grant(account=account, amount=100, reference="grant")
        _endpoint(started(account))  # an enabled endpoint for the account ("*")
        for _ in range(2):
            with CaptureQueriesContext(connection) as queries:
                assert finish(account).status == "succeeded"
            counts.append(len(queries))
        assert [len(d) for *_, d in deliveries(account)] == [1, 1]
    first, second, plain, plain_again = counts
    assert plain == plain_again
    assert (first, second) == (plain + 1, plain)  # only the first pays the refused batch
    assert calls == [False]  # the second finish did not try the batch


@pytest.mark.postgres
def test_an_endpoint_removed_or_added_between_finishes_gets_the_plain_paths_deliveries(
    make_account, monkeypatch, rivya_settings
):
    calls = spy(monkeypatch)
    clock = [0.0]
    monkeypatch.setattr(pg_finish.time, "monotonic", lambda: clock[0])
    left = []
    for batched in (True, False):
        rivya_settings("RIVYA_API", GENERATION_FINISH_BATCHED=batched)
        pg_finish.endpoint_seen.clear()
        account = make_account()
        billing.credits_grant(account=account, amount=100, reference="grant")
        _endpoint(started(account))
        finish(account)  # refused for its endpoint: remembered
        WebhookEndpoint.objects.filter(account=account).update(enabled=False)
        finish(account)  # remembered: the plain path, no delivery
        clock[0] += pg_finish.endpoint_seen.TTL + 1
        finish(account)  # forgotten: the batch writes it, no delivery
        _endpoint(started(account))
        finish(account)  # added: the batch refuses, the plain path delivers to it (not to the disabled one)
        finish(account)
        left.append(deliveries(account))
    assert calls == [False, True, False]
    assert left[0] == left[1]
    assert [(kind, len(sent)) for kind, _, sent in left[0]] == [("generation.succeeded", n) for n in (1, 0, 0, 1, 1)]


def test_endpoint_seen_expires_and_is_bounded(monkeypatch):
    seen, clock = pg_finish._EndpointSeen(), [100.0]
    monkeypatch.setattr(pg_finish.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(seen, "SIZE", 3)
    for account in (1, 2, 3, 1, 4):
        seen.remember(account)
    assert [seen.has(a) for a in (1, 2, 3, 4)] == [True, False, True, True]  # 2, the oldest, dropped
    clock[0] += seen.TTL
    assert [seen.has(a) for a in (1, 3, 4)] == [False, False, False]
    assert seen._until == {}


@pytest.mark.parametrize("free", [False, True], ids=["priced", "free"])
def test_hostile_input_and_metadata_are_bound_not_spliced(make_account, monkeypatch, rivya_settings, free):
    """Quotes, a COMMIT, placeholders and backslashes in the input: the same rows either way."""
    calls, left = spy(monkeypatch), []
    for batched in (True, False):
        rivya_settings("RIVYA_API", GENERATION_FINISH_BATCHED=batched)
        account = make_account()
        billing.credits_grant(account=account, amount=100, reference="grant")
        task = services.generation_create(
            account=account,
            model_id=FREE["id"] if free else "test-image",
            input={"prompt": HOSTILE},
            metadata={"k": HOSTILE},
        )
        task = services.generation_start(task_pk=task.pk)
        done = finishing.generation_succeed(task=task, outputs=[PIXEL])
        left.append(written(account, task, done))
        stored = GenerationTask.objects.get(pk=task.pk)
        assert (stored.input["prompt"], stored.metadata["k"]) == (HOSTILE, HOSTILE)
        event = WebhookEvent.objects.get(account=account)
        assert (event.data["input"]["prompt"], event.data["metadata"]["k"]) == (HOSTILE, HOSTILE)
    assert left[0] == left[1]
    assert calls == ([True] if connection.vendor == "postgresql" else [])
