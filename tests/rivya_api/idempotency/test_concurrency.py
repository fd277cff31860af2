"""Claims race from many connections at once: the database picks exactly one winner."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from rivya_api.idempotency import services
from rivya_api.idempotency.services import ClaimOutcome
from tests.rivya_api.idempotency.concurrency import run_concurrently
from tests.rivya_api.idempotency.urls import executions

pytestmark = [pytest.mark.postgres, pytest.mark.stress, pytest.mark.django_db(transaction=True)]

CLIENTS = 20
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REPEATS = int(os.environ.get("RIVYA_STRESS_REPEATS", "1"))


def claim_all(account, *, now, fingerprint="fp"):
    return run_concurrently(
        CLIENTS,
        lambda _: services.idempotency_claim(account=account, key="race", fingerprint=fingerprint, now=now).outcome,
    )


@pytest.mark.parametrize("repeat", range(REPEATS))
def test_concurrent_first_attempts_one_proceeds(make_account, repeat):
    account = make_account()
    outcomes = Counter(claim_all(account, now=T0))
    assert outcomes == {ClaimOutcome.PROCEED: 1, ClaimOutcome.IN_FLIGHT: CLIENTS - 1}


@pytest.mark.parametrize("repeat", range(REPEATS))
def test_concurrent_takeovers_of_a_dead_lease_one_proceeds(make_account, repeat):
    account = make_account()
    services.idempotency_claim(account=account, key="race", fingerprint="fp", now=T0)
    outcomes = Counter(claim_all(account, now=T0 + timedelta(seconds=301)))
    assert outcomes == {ClaimOutcome.PROCEED: 1, ClaimOutcome.IN_FLIGHT: CLIENTS - 1}


@pytest.mark.parametrize("repeat", range(REPEATS))
def test_concurrent_reuse_of_an_expired_key_one_proceeds(make_account, repeat):
    account = make_account()
    first = services.idempotency_claim(account=account, key="race", fingerprint="old", now=T0)
    services.idempotency_complete(record=first.record, status_code=200, headers={}, body=b"", now=T0)
    outcomes = Counter(claim_all(account, now=T0 + timedelta(days=1), fingerprint="new"))
    assert outcomes == {ClaimOutcome.PROCEED: 1, ClaimOutcome.IN_FLIGHT: CLIENTS - 1}


@pytest.mark.parametrize("repeat", range(REPEATS))
def test_purge_racing_a_takeover_never_deletes_the_new_claim(make_account, repeat):
    account = make_account()
    first = services.idempotency_claim(account=account, key="race", fingerprint="old", now=T0)
    services.idempotency_complete(record=first.record, status_code=200, headers={}, body=b"", now=T0)
    later = T0 + timedelta(days=1, seconds=1)

    def work(index):
        if index % 2:
            return services.idempotency_records_purge(now=later)
        return services.idempotency_claim(account=account, key="race", fingerprint="new", now=later).outcome

    results = run_concurrently(10, work)
    outcomes = Counter(r for r in results if isinstance(r, ClaimOutcome))
    # Whether the purge or a claimer got there first, exactly one claim owns
    # the key afterwards and its row survives every purge.
    assert outcomes[ClaimOutcome.PROCEED] == 1
    assert services.IdempotencyRecord.objects.get(account=account, key="race").fingerprint == "new"


@pytest.mark.urls("tests.rivya_api.idempotency.urls")
@pytest.mark.parametrize("repeat", range(REPEATS))
def test_twenty_clients_same_post_same_key_execute_once(make_account, make_api_client, repeat):
    account = make_account()
    # Twenty clients, each with its own API key of the account: the key's scope
    # is the account, so they all race for the same claim.
    clients = [make_api_client(account) for _ in range(CLIENTS)]
    body = json.dumps({"name": "race", "tags": ["x"], "pause": 0.3})

    def send(index):
        return clients[index].post(
            "/api/v1/_test/widgets", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="same-key"
        )

    responses = run_concurrently(CLIENTS, send)
    assert executions(account) == 1
    originals = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r]
    assert len(originals) == 1
    original = originals[0]
    others = Counter()
    for response in responses:
        if response is original:
            continue
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "idempotency_key_in_flight"
            assert response["Retry-After"] == "1"
            others["in_flight"] += 1
        else:
            assert response.status_code == 201
            assert response["Idempotent-Replayed"] == "true"
            assert response.content == original.content
            others["replayed"] += 1
    assert sum(others.values()) == CLIENTS - 1
    # Those told to retry later now get the stored response.
    retries = run_concurrently(CLIENTS, send)
    assert all(r.status_code == 201 and r["Idempotent-Replayed"] == "true" for r in retries)
    assert {r.content for r in retries} == {original.content}
    assert executions(account) == 1
