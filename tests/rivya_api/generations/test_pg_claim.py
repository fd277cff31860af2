"""The one-statement claim (``generations/pg_claim``) against the plain path, on every database.

The same claims run with ``GENERATION_CLAIM_SQL`` on and off and must leave the same task and
hold, return the same task (with its account loaded) and raise the same errors: a first claim,
a free task, a claim after the sweeper re-queued the task, a hold whose token moved without the
task (the fast path's guess is off: it rolls back and the plain path claims), a model gone from
the catalog, a task not queued, a hold already released. On SQLite both settings take the plain
path. On PostgreSQL: the claim is two statements in its transaction (one with ``pg_claim_hold``),
and claims of one task raced from many connections let exactly one win, whose token is the hold's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import isolate_apps
from django.utils import timezone

from rivya_api.catalog.registry import loaded_catalog
from rivya_api.generations import pg_claim, pg_claim_hold, services
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers.local import LocalImageProvider
from rivya_billing import services as billing
from rivya_billing.models import Hold
from tests.factories import two_table_models
from tests.rivya_api.generations.fakes import GENERATION_MODELS, LOCAL, model
from tests.rivya_billing.concurrency import run_concurrently

MODELS = [*GENERATION_MODELS, model("test-free", f"{LOCAL}.LocalImageProvider", price=0)]
NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
# Ids, names and times of acceptance differ between the two runs; everything else must not.
UNCOMPARED = {"id", "public_id", "account_id", "created_at", "queued_at", "expires_at", "input"}

pytestmark = pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": MODELS, "GENERATION_PROVIDER_PROCESS": False}})


def task_row(task: GenerationTask) -> dict[str, Any]:
    fields = GenerationTask._meta.concrete_fields
    return {f.attname: getattr(task, f.attname) for f in fields if f.attname not in UNCOMPARED}


def hold_row(task: GenerationTask) -> Any:
    """State, token and the lease left now, to 10 s: billing's renew takes the wall clock, not the
    tests' NOW, so two runs seconds apart agree at that grain and a lease taken otherwise does not."""
    hold = Hold.objects.filter(reference=task.public_id).first()
    left = hold and round((hold.lease_expires_at - timezone.now()).total_seconds() / 10) * 10
    return hold and (hold.state, hold.lease_token, left)


def account_row(account: Any) -> dict[str, Any]:
    """Every column of the account as loaded (whatever model the host made its account)."""
    return {field.attname: getattr(account, field.attname) for field in account._meta.concrete_fields}


def claim(task: GenerationTask) -> Any:
    try:
        claimed = services.generation_start(task_pk=task.pk)
    except Exception as error:
        hold = Hold.objects.filter(reference=task.public_id).first()
        lease = hold.lease_expires_at.isoformat() if hold else "<none>"  # a lapsed lease is named, at each run's time
        return type(error).__name__, str(error).replace(task.public_id, "<task>").replace(lease, "<lease>")
    if claimed is None:
        return None
    assert claimed.account == task.account
    assert account_row(claimed.account) == account_row(type(task.account).objects.get(pk=task.account.pk))
    assert claimed.input == task.input
    assert task_row(claimed) == task_row(GenerationTask.objects.get(pk=task.pk))
    return task_row(claimed)


def claims(account: Any, monkeypatch: Any) -> list[Any]:
    """Every kind of claim, in one run; what each returned and the rows after."""
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    monkeypatch.setattr(services, "_now", lambda: NOW)

    def create(model_id: str = "test-image") -> GenerationTask:
        return services.generation_create(account=account, model_id=model_id, input={"prompt": "a red fox"})

    first, free = create(), create("test-free")
    requeued, moved, gone, released, lapsed = create(), create(), create(), create(), create()
    results = [claim(first), claim(free), claim(first)]  # the last: not queued
    claim(requeued)
    GenerationTask.objects.filter(pk=requeued.pk).update(status="queued")
    services.claim_hold(GenerationTask.objects.get(pk=requeued.pk), services.api_settings.GENERATION_RUN_LEASE)
    results.append(claim(requeued))
    billing.credits_hold_renew(account=account, reference=moved.public_id)  # the task does not know
    results.append(claim(moved))
    GenerationTask.objects.filter(pk=gone.pk).update(model="no-longer-listed")
    results.append(claim(gone))
    billing.credits_release(account=account, reference=released.public_id)
    results.append(claim(released))
    Hold.objects.filter(reference=lapsed.public_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    results.append(claim(lapsed))
    tasks = [first, free, requeued, moved, gone, released, lapsed]
    results.append([(task_row(GenerationTask.objects.get(pk=t.pk)), hold_row(t)) for t in tasks])
    return results


@pytest.mark.parametrize("hold_sql", [False, True], ids=["claim_sql", "claim_hold_sql"])
@pytest.mark.django_db(transaction=True)
def test_the_fast_claim_matches_the_plain_path(make_account, rivya_settings, monkeypatch, hold_sql):
    """``hold_sql``: the hold's lease in the claim's statement (``pg_claim_hold``), whose hold part
    matching no row (the released hold) also rolls back for the plain path, which refuses."""
    plain_account, fast_account = make_account(), make_account()
    for account in (plain_account, fast_account):
        billing.credits_grant(account=account, amount=100, reference="grant")
    rivya_settings("RIVYA_API", MODELS=MODELS, GENERATION_PROVIDER_PROCESS=False, GENERATION_CLAIM_SQL=False)
    assert not pg_claim.enabled()
    assert not pg_claim_hold.enabled()
    plain = claims(plain_account, monkeypatch)
    rivya_settings(
        "RIVYA_API",
        MODELS=MODELS,
        GENERATION_PROVIDER_PROCESS=False,
        GENERATION_CLAIM_SQL=True,
        GENERATION_CLAIM_HOLD_SQL=hold_sql,
    )
    assert pg_claim.enabled() == (connection.vendor == "postgresql")
    assert pg_claim_hold.enabled() == (hold_sql and connection.vendor == "postgresql")
    plain_claims: list[int] = []
    start_locked = services._start_locked
    monkeypatch.setattr(services, "_start_locked", lambda *a: plain_claims.append(a[0]) or start_locked(*a))
    fast = claims(fast_account, monkeypatch)
    assert fast == plain
    if connection.vendor == "postgresql":  # the token guess was off; merged: also the released and lapsed holds
        assert len(plain_claims) == (3 if hold_sql else 1)
    assert plain[-3][0] == "HoldNotPendingError"
    assert plain[-2][0] == "StaleHoldError"
    lapsed_task, lapsed_hold = plain[-1][-1]
    assert (lapsed_task["status"], lapsed_hold[:2]) == ("queued", ("pending", 0))


@pytest.mark.postgres
@pytest.mark.parametrize(("hold_sql", "queries"), [(False, 4), (True, 3)], ids=["claim_sql", "claim_hold_sql"])
@pytest.mark.django_db(transaction=True)
def test_the_fast_claim_is_one_or_two_statements_in_its_transaction(
    account, monkeypatch, rivya_settings, django_assert_num_queries, hold_sql, queries
):
    """BEGIN, the task's UPDATE, the hold's UPDATE (in the task's with ``pg_claim_hold``), COMMIT."""
    rivya_settings("RIVYA_API", MODELS=MODELS, GENERATION_PROVIDER_PROCESS=False, GENERATION_CLAIM_HOLD_SQL=hold_sql)
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
    hold = Hold.objects.get(reference=task.public_id)
    with django_assert_num_queries(queries):
        claimed = services.generation_start(task_pk=task.pk)
    assert (claimed.status, claimed.attempts, claimed.hold_token) == ("running", 1, 1)
    renewed = Hold.objects.get(pk=hold.pk)
    assert (renewed.state, renewed.lease_token) == ("pending", 1)
    lease = services.api_settings.GENERATION_RUN_LEASE
    assert timedelta(0) <= renewed.lease_expires_at - claimed.heartbeat_at - lease < timedelta(seconds=5)


PATHS = {"plain": (False, False), "claim_sql": (True, False), "claim_hold_sql": (True, True)}


@pytest.mark.parametrize(("claim_sql", "hold_sql"), PATHS.values(), ids=PATHS.keys())
@pytest.mark.django_db(transaction=True)
def test_the_claims_lease_runs_the_run_lease_from_the_claim(account, monkeypatch, rivya_settings, claim_sql, hold_sql):
    """Every path leases the hold for ``GENERATION_RUN_LEASE`` from the moment of the claim."""
    rivya_settings(
        "RIVYA_API",
        MODELS=MODELS,
        GENERATION_PROVIDER_PROCESS=False,
        GENERATION_CLAIM_SQL=claim_sql,
        GENERATION_CLAIM_HOLD_SQL=hold_sql,
    )
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    monkeypatch.setattr(services, "_now", lambda: NOW)  # the task's clock is not the lease's
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
    lease = services.api_settings.GENERATION_RUN_LEASE
    before = timezone.now()
    assert services.generation_start(task_pk=task.pk).hold_token == 1
    after = timezone.now()
    assert before + lease <= Hold.objects.get(reference=task.public_id).lease_expires_at <= after + lease


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_raced_claims_of_one_task_let_exactly_one_win(make_account, monkeypatch):
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    account = make_account()
    billing.credits_grant(account=account, amount=100, reference="grant")
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a red fox"})
    run = run_concurrently(16, lambda _: services.generation_start(task_pk=task.pk))
    assert run.unexpected() == []
    winners = [claimed for claimed in run.winners() if claimed is not None]
    assert len(winners) == 1
    stored = GenerationTask.objects.get(pk=task.pk)
    assert (stored.status, stored.attempts, stored.hold_token) == ("running", 1, winners[0].hold_token)
    assert hold_row(stored)[:2] == ("pending", stored.hold_token)


@isolate_apps("rivya_api")
def test_an_account_model_with_a_parent_table_takes_the_plain_path(monkeypatch):
    """Multi-table inheritance: the parent's columns are in the parent's table, which the UPDATE
    does not join (it would name them on the child's table and every claim would fail)."""

    Tenant, Org = two_table_models()

    class OrgProxy(Org):
        class Meta:
            app_label, proxy = "rivya_api", True

    assert pg_claim.in_one_table(Tenant)
    assert not pg_claim.in_one_table(Org)
    assert not pg_claim.in_one_table(OrgProxy)
    assert pg_claim.in_one_table(pg_claim._account_model())  # the tests' account model (auth.User)
    monkeypatch.setattr(pg_claim, "_account_model", lambda: Org)
    assert not pg_claim.enabled()


class UnconfigurableProvider(LocalImageProvider):
    """A provider whose ``is_configured`` raises: its model is not listed, with a log on every ask."""

    asked = 0

    @classmethod
    def is_configured(cls, options: Any) -> bool:
        cls.asked += 1
        raise RuntimeError("no configuration here")


UNCONFIGURABLE = model("test-unconfigurable", f"{__name__}.UnconfigurableProvider")


@pytest.mark.django_db(transaction=True)
def test_the_claims_limits_are_built_once_per_catalog_load(account, rivya_settings, monkeypatch):
    """Claims pass the catalog's limits without listing it (no provider's ``is_configured`` is
    asked, so a failing one is not logged on every claim); a reload builds them anew."""
    monkeypatch.setattr(services, "enqueue_on_commit", lambda task: None)
    rivya_settings("RIVYA_API", MODELS=[*MODELS, UNCONFIGURABLE], GENERATION_PROVIDER_PROCESS=False)
    billing.credits_grant(account=account, amount=100, reference="grant")
    tasks = [
        services.generation_create(account=account, model_id="test-image", input={"prompt": "a fox"}) for _ in "ab"
    ]
    UnconfigurableProvider.asked = 0
    assert all(services.generation_start(task_pk=task.pk) for task in tasks)
    assert UnconfigurableProvider.asked == 0
    heartbeat = services.api_settings.GENERATION_HEARTBEAT_TIMEOUT.total_seconds()
    built = pg_claim.limits_json(loaded_catalog(), heartbeat)
    assert pg_claim.limits_json(loaded_catalog(), heartbeat) is built
    limits = {entry["id"]: entry["limits"]["timeout_seconds"] + heartbeat for entry in [*MODELS, UNCONFIGURABLE]}
    assert json.loads(built) == limits

    longer = [
        {**entry, "limits": {"timeout_seconds": 90}} if entry["id"] == "test-image" else entry for entry in MODELS
    ]
    rivya_settings("RIVYA_API", MODELS=longer, GENERATION_PROVIDER_PROCESS=False)  # reloads the catalog
    assert json.loads(pg_claim.limits_json(loaded_catalog(), heartbeat))["test-image"] == 90 + heartbeat
    task = services.generation_create(account=account, model_id="test-image", input={"prompt": "a fox"})
    claimed = services.generation_start(task_pk=task.pk)
    assert claimed.deadline_at - claimed.heartbeat_at == timedelta(seconds=90 + heartbeat)
