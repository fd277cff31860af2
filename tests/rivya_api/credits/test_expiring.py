"""Expiring grants where a user sees them: ``expiring`` and ``activity.expired`` on GET /api/v1/credits,
the ``expire`` entry in the ledger, and ``rivya_bootstrap --grant-expires-in-days``."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from rivya_api.accounts import account_for_user
from rivya_billing import services
from rivya_billing.models import CreditGrant
from rivya_billing.selectors import wallet_get
from tests.openapi import assert_matches_openapi

pytestmark = pytest.mark.django_db

CREDITS, LEDGER = "/api/v1/credits", "/api/v1/credits/ledger"


def test_credits_list_upcoming_expiries_soonest_first_and_expired_activity(
    api_client, account, make_account, make_api_client
):
    now = timezone.now()
    services.credits_grant(account=account, amount=100, reference="plain")
    services.credits_grant(account=account, amount=50, reference="late", expires_at=now + timedelta(days=30))
    services.credits_grant(account=account, amount=40, reference="soon", expires_at=now + timedelta(days=7))
    services.credits_grant(account=account, amount=5, reference="gone", expires_at=now + timedelta(seconds=1))
    services.credits_reserve(account=account, amount=15, reference="task_1")
    services.credits_settle(account=account, reference="task_1", amount=15)
    assert services.credits_expire_grants(now=now + timedelta(seconds=2)) == 0  # "gone" was spent first

    response = api_client.get(CREDITS)
    body = response.json()
    assert body["balance"] == 180
    assert [(e["credits"], e["expires_at"][:10]) for e in body["expiring"]] == [
        (30, (now + timedelta(days=7)).date().isoformat()),
        (50, (now + timedelta(days=30)).date().isoformat()),
    ]
    assert body["activity"]["expired"] == 0
    assert_matches_openapi(response, "get", CREDITS)

    services.credits_reserve(account=account, amount=10, reference="task_2")  # held: never expired
    assert services.credits_expire_grants(now=now + timedelta(days=8)) == 20
    body = api_client.get(CREDITS).json()
    assert (body["balance"], body["held"]) == (160, 10)
    assert [e["credits"] for e in body["expiring"]] == [10, 50]  # the held rest stays listed, due
    assert (body["activity"]["expired"], body["activity"]["released"]) == (20, 0)
    entry = api_client.get(LEDGER, {"type": "expire"}).json()["data"][0]
    assert (entry["amount"], entry["balance_change"], entry["held_change"], entry["hold_id"], entry["reference"]) == (
        20,
        -20,
        0,
        None,
        "soon",
    )
    # Another account sees none of it.
    other = make_api_client(make_account()).get(CREDITS).json()
    assert other["expiring"] == []


def test_an_empty_wallet_has_no_expiries(api_client):
    assert api_client.get(CREDITS).json()["expiring"] == []


def bootstrap(*args: str) -> str:
    out = io.StringIO()
    call_command("rivya_bootstrap", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_bootstrap_grants_expiring_credits():
    before = timezone.now()
    bootstrap("--username", "acme", "--credits", "500", "--grant-expires-in-days", "14")
    account = account_for_user(get_user_model().objects.get(username="acme"))
    grant = CreditGrant.objects.get(wallet__account=account)
    assert (grant.amount, grant.remaining) == (500, 500)
    assert before + timedelta(days=14) <= grant.expires_at <= timezone.now() + timedelta(days=14)
    bootstrap("--username", "acme", "--credits", "100")  # without the flag: credits that never expire
    assert CreditGrant.objects.filter(wallet__account=account).count() == 1
    assert wallet_get(account=account).balance == 600


@pytest.mark.parametrize("days", ["0", "-3"])
def test_bootstrap_refuses_a_grant_expiry_below_one_day(days):
    with pytest.raises(CommandError, match="1 or more"):
        bootstrap("--username", "acme", "--credits", "5", "--grant-expires-in-days", days)
    assert not CreditGrant.objects.exists()
