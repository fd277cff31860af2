"""A first attempt whose web process is SIGKILLed mid-request: its key is not locked forever."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from django.contrib.auth.models import Group

from rivya_api.idempotency.models import IdempotencyRecord
from tests.rivya_api.idempotency.live_server import live_server
from tests.rivya_api.idempotency.urls import HOLD, STARTED, executions

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEASE = 4


def test_killed_first_attempt_is_409_until_its_lease_expires_then_runs_once(account, make_api_key):
    _, secret = make_api_key(account)
    json_headers = {
        "Authorization": f"Bearer {secret}",
        "Idempotency-Key": "survives-a-crash",
        "Content-Type": "application/json",
    }
    body = json.dumps({"name": "doomed", "hold": True})
    Group.objects.create(name=HOLD)
    outcome: dict = {}

    # Two web processes, as in production: the first dies, the retry lands on the other.
    with (
        live_server(RIVYA_TEST_IDEMPOTENCY_LEASE=str(LEASE)) as doomed,
        live_server(RIVYA_TEST_IDEMPOTENCY_LEASE=str(LEASE)) as survivor,
    ):

        def first_attempt() -> None:
            try:
                outcome["response"] = httpx.post(
                    f"{doomed.url}/api/v1/_test/widgets",
                    content=body,
                    headers=json_headers,
                    timeout=30,
                )
            except httpx.TransportError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=first_attempt)
        thread.start()
        deadline = time.monotonic() + 20
        while not Group.objects.filter(name__startswith=STARTED).exists():
            assert time.monotonic() < deadline, "the first attempt never started executing"
            time.sleep(0.02)
        doomed.kill()
        thread.join(10)
        assert "error" in outcome, "the killed process must not have answered"
        record = IdempotencyRecord.objects.get(account=account, key="survives-a-crash")
        assert record.state == IdempotencyRecord.State.IN_FLIGHT

        def post() -> httpx.Response:
            return httpx.post(f"{survivor.url}/api/v1/_test/widgets", content=body, headers=json_headers, timeout=30)

        Group.objects.filter(name=HOLD).delete()
        # Within the dead attempt's lease the key is still in flight.
        retry = post()
        assert retry.status_code == 409, retry.text
        assert retry.json()["error"]["code"] == "idempotency_key_in_flight"
        assert int(retry.headers["Retry-After"]) >= 1
        assert executions(account) == 0

        # Retrying as an SDK would, honouring Retry-After, the lease expires and
        # exactly one retry takes the key over and runs.
        deadline = time.monotonic() + LEASE + 10
        while retry.status_code == 409:
            assert time.monotonic() < deadline, "the dead attempt's lease never expired"
            time.sleep(int(retry.headers["Retry-After"]))
            retry = post()
        assert retry.status_code == 201, retry.text
        assert "Idempotent-Replayed" not in retry.headers
        assert executions(account) == 1

        again = post()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.content == retry.content
        assert executions(account) == 1
