"""GET /api/v1/credits and /api/v1/credits/ledger: the wallet and its ledger, scoped to the key's account."""

from __future__ import annotations

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rivya_api.common.errors import response_for_exception
from rivya_billing import services
from rivya_billing.exceptions import InsufficientCreditsError
from tests.openapi import assert_matches_openapi

pytestmark = pytest.mark.django_db

CREDITS, LEDGER = "/api/v1/credits", "/api/v1/credits/ledger"


def error(response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code
    assert body["param"] == param
    return body


@pytest.fixture
def history(account, api_key):
    """A grant, a settled generation (by the API key) and a released Studio job."""
    key, _ = api_key
    services.credits_grant(account=account, amount=1000, reference="grant:welcome", actor="system:rivya_bootstrap")
    services.credits_reserve(account=account, amount=40, reference="task_A", actor=key.public_id)
    services.credits_settle(account=account, reference="task_A", amount=40, actor=key.public_id)
    services.credits_reserve(account=account, amount=50, reference="studio_1", actor=f"user:{account.pk}")
    services.credits_release(account=account, reference="studio_1", actor=f"user:{account.pk}")
    services.credits_reserve(account=account, amount=25, reference="task_B", actor=key.public_id)
    return account


def test_credits_need_an_api_key(client):
    response = client.get(CREDITS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.get(LEDGER).status_code == 401


def test_an_account_that_never_had_credits_has_an_empty_wallet(api_client):
    response = api_client.get(CREDITS)
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("object", "balance", "held", "available", "unit", "updated_at")} == {
        "object": "credits",
        "balance": 0,
        "held": 0,
        "available": 0,
        "unit": "credits",
        "updated_at": None,
    }
    assert body["activity"]["days"] == 30
    assert body["activity"]["granted"] == 0
    assert_matches_openapi(response, "get", CREDITS)
    ledger = api_client.get(LEDGER)
    assert ledger.json() == {"object": "list", "data": [], "has_more": False, "next_cursor": None}
    assert_matches_openapi(ledger, "get", LEDGER)


def test_credits_show_balance_held_available_and_recent_activity(api_client, history):
    response = api_client.get(CREDITS)
    body = response.json()
    assert (body["balance"], body["held"], body["available"]) == (960, 25, 935)
    assert body["updated_at"].endswith("Z")
    activity = {k: v for k, v in body["activity"].items() if k not in ("since", "days")}
    assert activity == {
        "granted": 1000,
        "reserved": 115,
        "charged": 40,
        "released": 50,
        "refunded": 0,
        "adjusted": 0,
        "expired": 0,
    }
    assert body["expiring"] == []
    assert_matches_openapi(response, "get", CREDITS)


@pytest.mark.rivya_settings({"RIVYA_BILLING": {"UNIT": "tokens", "ACTIVITY_WINDOW_DAYS": 7}})
def test_unit_and_window_come_from_settings(api_client, history):
    body = api_client.get(CREDITS).json()
    assert (body["unit"], body["activity"]["days"]) == ("tokens", 7)


def test_the_ledger_lists_every_change_newest_first(api_client, history, api_key):
    key, _ = api_key
    response = api_client.get(LEDGER)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(e["sequence"], e["type"], e["amount"], e["reference"]) for e in data] == [
        (6, "reserve", 25, "task_B"),
        (5, "release", 50, "studio_1"),
        (4, "reserve", 50, "studio_1"),
        (3, "settle", 40, "task_A"),
        (2, "reserve", 40, "task_A"),
        (1, "grant", 1000, "grant:welcome"),
    ]
    settle = next(e for e in data if e["type"] == "settle")
    assert settle["id"].startswith("le_")
    assert settle["object"] == "ledger_entry"
    assert (settle["balance_change"], settle["held_change"]) == (-40, -40)
    assert (settle["balance"], settle["held"], settle["available"]) == (960, 0, 960)
    assert settle["hold_id"].startswith("hold_")
    assert settle["actor"] == key.public_id
    assert next(e for e in data if e["reference"] == "studio_1")["actor"] == "user"  # never a primary key
    assert_matches_openapi(response, "get", LEDGER)


def test_the_ledger_filters_by_reference_and_type(api_client, history):
    by_reference = api_client.get(LEDGER, {"reference": "task_A"}).json()["data"]
    assert [e["type"] for e in by_reference] == ["settle", "reserve"]
    reserves = api_client.get(LEDGER, {"type": "reserve"}).json()["data"]
    assert [e["reference"] for e in reserves] == ["task_B", "studio_1", "task_A"]
    grant = api_client.get(LEDGER, {"type": "grant"}).json()["data"]
    assert [(e["actor"], e["hold_id"]) for e in grant] == [("system", None)]
    error(api_client.get(LEDGER, {"type": "spend"}), 400, "invalid_choice", "type")


def test_the_reference_filter_includes_refunds_of_that_work(api_client, history):
    services.credits_refund(account=history, reference="admin:refund:9", charge_reference="task_A", amount=5)
    by_task = api_client.get(LEDGER, {"reference": "task_A"}).json()["data"]
    assert [(e["type"], e["reference"]) for e in by_task] == [
        ("refund", "admin:refund:9"),
        ("settle", "task_A"),
        ("reserve", "task_A"),
    ]
    by_refund = api_client.get(LEDGER, {"reference": "admin:refund:9"}).json()["data"]
    assert [e["type"] for e in by_refund] == ["refund"]
    assert api_client.get(LEDGER, {"reference": "msg_unknown"}).json()["data"] == []
    assert api_client.get(LEDGER, {"reference": "chat_unknown"}).json()["data"] == []


def test_an_invalid_choice_lists_the_valid_values(api_client):
    body = error(api_client.get(LEDGER, {"type": "spend"}), 400, "invalid_choice", "type")
    assert body["message"] == (
        '"spend" is not a valid choice; use one of: grant, reserve, settle, release, expire, overrun, waive, '
        "refund, adjust."
    )


def test_the_ledger_pages_with_a_cursor(api_client, history):
    first = api_client.get(LEDGER, {"limit": 4}).json()
    assert [e["sequence"] for e in first["data"]] == [6, 5, 4, 3]
    assert (first["has_more"], first["next_cursor"]) == (True, first["data"][-1]["id"])
    second = api_client.get(LEDGER, {"limit": 4, "after": first["next_cursor"]}).json()
    assert [e["sequence"] for e in second["data"]] == [2, 1]
    assert (second["has_more"], second["next_cursor"]) == (False, None)
    error(api_client.get(LEDGER, {"after": "le_nope"}), 400, "invalid_request", "after")
    error(api_client.get(LEDGER, {"limit": 0}), 400, "invalid_request", "limit")


def test_another_accounts_wallet_and_entries_are_invisible(history, make_account, make_api_client):
    other_client = make_api_client(make_account())
    assert other_client.get(CREDITS).json()["balance"] == 0
    assert other_client.get(LEDGER).json()["data"] == []
    assert other_client.get(LEDGER, {"reference": "task_A"}).json()["data"] == []
    # A cursor taken from another account's ledger names nothing here.
    mine = services.credits_grant(account=history, amount=1, reference="grant:2")
    error(other_client.get(LEDGER, {"after": mine.public_id}), 400, "invalid_request", "after")


def test_insufficient_credits_is_a_402_that_says_not_to_retry():
    response = response_for_exception(
        InsufficientCreditsError("Cannot reserve 5 credits: 2 available.", requested=5, available=2)
    )
    assert response.status_code == 402
    assert response["x-should-retry"] == "false"
    body = json.loads(response.content)["error"]
    assert (body["type"], body["code"], body["param"]) == ("billing_error", "insufficient_credits", None)


def test_activity_is_cached_until_the_next_ledger_entry(api_client, history):
    def totals(response) -> dict:
        return {k: v for k, v in response.json()["activity"].items() if k != "since"}  # since = now - days

    first = totals(api_client.get(CREDITS))
    with CaptureQueriesContext(connection) as queries:
        assert totals(api_client.get(CREDITS)) == first
    assert not [q["sql"] for q in queries.captured_queries if "SUM(" in q["sql"].upper()], "the aggregate ran again"
    services.credits_grant(account=history, amount=5, reference="grant:more")
    assert totals(api_client.get(CREDITS))["granted"] == first["granted"] + 5


def test_activity_kept_in_the_process_ends_with_the_shared_entry(api_client, history, monkeypatch):
    from django.core.cache import cache

    from rivya_api.credits import views

    def totals(response) -> dict:
        return {k: v for k, v in response.json()["activity"].items() if k != "since"}

    def aggregates(queries) -> list[str]:
        return [q["sql"] for q in queries.captured_queries if "SUM(" in q["sql"].upper()]

    first = totals(api_client.get(CREDITS))
    reads = []
    monkeypatch.setattr(cache, "get", lambda key, *a, **k: reads.append(key) or None)  # the shared entry: gone
    with CaptureQueriesContext(connection) as queries:
        assert totals(api_client.get(CREDITS)) == first
    assert not aggregates(queries), "the process's copy was not used"
    assert not [key for key in reads if "credits:totals" in key]
    # Past the shared entry's end the process's copy ends too: read again (here: computed again).
    now = time.time()
    monkeypatch.setattr(views.time, "time", lambda: now + views.ACTIVITY_CACHE_SECONDS + 1)
    with CaptureQueriesContext(connection) as queries:
        assert totals(api_client.get(CREDITS)) == first
    assert aggregates(queries)
    assert [key for key in reads if "credits:totals" in key]
