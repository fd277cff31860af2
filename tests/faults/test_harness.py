"""The harness itself: a stack on a private PostgreSQL and Redis answers, and stops without leftovers."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(300)]


def test_stack_serves_a_funded_key(stack):
    secret = stack.bootstrap("harness", credits=100)
    with stack.client(secret) as client:
        assert client.get("/api/v1/generations").status_code == 200
        models = client.get("/api/v1/models").json()["data"]
        assert {m["kind"] for m in models} >= {"image", "audio", "video"}
    assert stack.sql("SELECT balance, held FROM rivya_billing_wallet") == [(100, 0)]
    assert len(stack.web_worker_pids()) == 2
