"""GET /credits' body built by ``credits_output`` against ``CreditsOutputSerializer``.

``RIVYA_API["CREDITS_BODY_PLAIN"]`` chooses between them.

The function must give what the serializer gives, key for key in the same order, for every shape of
body the view builds (no wallet, expiring grants, negative adjustments, another time zone, another
date format), and the endpoint must answer alike either way.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from rivya_api.credits.serializers import CreditsOutputSerializer, credits_output
from rivya_billing import services

WHEN = datetime(2026, 5, 1, 9, 31, 0, 123456, tzinfo=UTC)


def body(**changes):
    activity = {"since": WHEN - timedelta(days=30), "days": 30, "granted": 1000, "reserved": 120, "charged": 53}
    activity.update({"released": 37, "refunded": 10, "adjusted": -4, "expired": 0})
    value = {
        "balance": 960,
        "held": 40,
        "available": 920,
        "unit": "credits",
        "updated_at": WHEN,
        "activity": activity,
        "expiring": [{"credits": 250, "expires_at": WHEN + timedelta(days=31)}, {"credits": 1, "expires_at": WHEN}],
    }
    return {**value, **changes}


def same(value):
    """Both renderings of ``value``: equal as JSON text (so key order and value types too)."""
    plain, serialized = credits_output(value), CreditsOutputSerializer(value).data
    assert json.dumps(plain) == json.dumps(serialized)
    assert list(plain) == list(CreditsOutputSerializer().fields)  # no field of the serializer left out
    assert list(plain["activity"]) == list(CreditsOutputSerializer().fields["activity"].fields)
    return plain


@pytest.mark.parametrize(
    "value",
    [
        body(),
        body(updated_at=None, expiring=[]),  # an account that never had a wallet
        body(balance=2**62, held=0, available=2**62, unit="tokens"),
        body(activity={**body()["activity"], "extra": 1}),  # keys the serializer has no field for are left out
        # what an aggregate may hand back on some database: converted as the fields convert it
        body(held=Decimal(40), activity={**body()["activity"], "charged": Decimal(53), "days": 30.0}),
    ],
    ids=["full", "no-wallet", "big-and-other-unit", "extra-key", "decimals"],
)
def test_the_plain_body_is_the_serializers(value):
    same(value)


def test_in_another_time_zone_and_date_format(settings):
    with timezone.override("America/New_York"):
        assert same(body())["updated_at"].endswith("-04:00")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DATETIME_FORMAT": "%Y-%m-%d %H:%M"}
    assert same(body())["updated_at"] == "2026-05-01 09:31"


@pytest.mark.django_db
@pytest.mark.parametrize("plain", [True, False])
def test_the_endpoint_answers_alike_either_way(account, api_client, rivya_settings, plain):
    soon = timezone.now() + timedelta(days=7)
    services.credits_grant(account=account, amount=300, reference="grant:x", expires_at=soon)
    services.credits_reserve(account=account, amount=40, reference="task_A")
    answers = []
    for value in (plain, not plain):
        rivya_settings("RIVYA_API", CREDITS_BODY_PLAIN=value)
        response = api_client.get("/api/v1/credits")
        varying = ("x-request-id", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")  # per request
        headers = {k: "…" if k.lower() in varying else v for k, v in response.headers.items()}
        answers.append((response.status_code, headers, json.loads(response.content)))
    (status, headers, data), other = answers
    assert (status, data["balance"], data["held"], len(data["expiring"])) == (200, 300, 40, 1)
    assert (status, headers) == other[:2]
    assert data["activity"].pop("since")[:13] == other[2]["activity"].pop("since")[:13]  # now less 30 days
    assert data == other[2]
