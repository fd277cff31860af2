"""Idempotent generation submissions: retries never make a second task or a second reservation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from rivya_api.generations.models import GenerationTask
from rivya_billing.models import Hold
from rivya_billing.selectors import wallet_get
from rivya_billing.services import credits_grant
from tests.rivya_api.generations.fakes import GENERATION_MODELS
from tests.rivya_api.idempotency.concurrency import run_concurrently

pytestmark = pytest.mark.rivya_settings({"RIVYA_API": {"MODELS": GENERATION_MODELS}})
BODY = json.dumps({"model": "test-image", "input": {"prompt": "one lighthouse"}})


def post(client, key: str = "gen-1", body: str = BODY):
    return client.post("/api/v1/generations", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_retry_after_success_replays_the_same_task(account, api_client):
    credits_grant(account=account, amount=20, reference="grant")
    first = post(api_client)
    again = post(api_client)
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert GenerationTask.objects.count() == 1
    assert wallet_get(account=account).held == 4


@pytest.mark.django_db
def test_a_402_is_replayed_too_and_reserves_nothing(account, api_client):
    first = post(api_client)
    assert first.status_code == 402
    credits_grant(account=account, amount=20, reference="grant")
    again = post(api_client)
    assert again.status_code == 402  # the first answer stands for this key
    assert again["Idempotent-Replayed"] == "true"
    assert not GenerationTask.objects.exists()


@pytest.mark.django_db
def test_same_key_other_body_is_422(account, api_client):
    credits_grant(account=account, amount=20, reference="grant")
    post(api_client)
    other = post(api_client, body=json.dumps({"model": "test-image", "input": {"prompt": "two"}}))
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_retries_make_one_task_and_one_reservation(make_account, make_api_client):
    account = make_account()
    credits_grant(account=account, amount=100, reference="grant")
    clients = [make_api_client(account) for _ in range(20)]
    responses = run_concurrently(20, lambda i: post(clients[i], key="race"))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {202, 409}
    assert GenerationTask.objects.count() == 1
    task = GenerationTask.objects.get()
    assert Hold.objects.filter(reference=task.public_id).count() == 1
    assert wallet_get(account=account).held == 4
    assert {r.json()["id"] for r in responses if r.status_code == 202} == {task.public_id}


@pytest.mark.django_db
def test_the_key_names_its_task_in_the_transaction_that_created_it(account, api_client):
    from rivya_api.idempotency.models import IdempotencyRecord

    credits_grant(account=account, amount=20, reference="grant")
    task_id = post(api_client, key="named").json()["id"]
    assert IdempotencyRecord.objects.get(key="named").reference == task_id
    post(api_client, key="refused", body=json.dumps({"model": "test-image", "input": {"prompt": "x" * 3000}}))
    assert not IdempotencyRecord.objects.filter(key="refused", reference__gt="").exists()


@pytest.mark.django_db
def test_retry_after_a_process_died_between_the_work_and_the_answer_returns_that_task(account, api_client):
    """The first attempt committed its task, then died before storing its response: no second task."""
    from datetime import timedelta

    from django.utils import timezone

    from rivya_api.idempotency.models import IdempotencyRecord

    credits_grant(account=account, amount=20, reference="grant")
    task_id = post(api_client, key="crashed").json()["id"]
    # What the dead process left: the claim in flight, its lease lapsed, no stored response.
    IdempotencyRecord.objects.filter(key="crashed").update(
        state=IdempotencyRecord.State.IN_FLIGHT,
        locked_until=timezone.now() - timedelta(seconds=1),
        completed_at=None,
        response_status=None,
        response_headers={},
        response_body=b"",
    )
    retry = post(api_client, key="crashed")
    assert retry.status_code == 202
    assert retry.json()["id"] == task_id
    assert retry["Idempotent-Replayed"] == "true"
    assert retry["Location"].endswith(task_id)
    assert GenerationTask.objects.count() == 1
    assert wallet_get(account=account).held == 4
    again = post(api_client, key="crashed")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == task_id
    assert IdempotencyRecord.objects.get(key="crashed").state == IdempotencyRecord.State.COMPLETED
