"""The PostgreSQL single-statement claim and success record against the plain ORM path.

Each test runs the same step both ways on twin deliveries and compares the rows
and the instances they leave, so the fast path cannot drift from the plain one.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.forms.models import model_to_dict

from rivya_webhooks import network
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import single_statement, webhook_event_publish
from rivya_webhooks.services.delivery import _attempt_row, _claim_and_load, _record_success, _success_values

pytestmark = [pytest.mark.postgres, pytest.mark.django_db, pytest.mark.usefixtures("local_targets")]

CLAIMS = {"plain": _claim_and_load, "one statement": single_statement.claim_and_load}
SKIP = {"id", "public_id", "event", "delivery", "claim_token"}


@pytest.fixture(autouse=True)
def _types():
    event_type_register("thing.created", "test")
    yield
    event_type_unregister("thing.created")


@pytest.fixture
def twins(account, clock, make_endpoint):
    """Two pending deliveries, due now, of two events to one endpoint."""
    make_endpoint("http://127.0.0.1:9/in", ["*"])
    for n in range(2):
        webhook_event_publish(account=account, type="thing.created", data={"n": n, "text": "é"}, clock=clock)
    return list(WebhookDelivery.objects.order_by("pk"))


def _claim(claim, delivery, clock, token):
    return claim(delivery_id=delivery.pk, now=clock(), lease_until=clock() + timedelta(seconds=90), token=token)


def _row(model, pk):
    return {k: v for k, v in model_to_dict(model.objects.get(pk=pk)).items() if k not in SKIP}


def test_both_claims_leave_the_same_row_and_load_the_same_delivery(twins, clock):
    plain_token, fast_token = uuid.uuid4().hex, uuid.uuid4().hex
    plain = _claim(_claim_and_load, twins[0], clock, plain_token)
    fast = _claim(single_statement.claim_and_load, twins[1], clock, fast_token)
    assert plain is not None
    assert fast is not None
    assert _row(WebhookDelivery, plain.pk) == _row(WebhookDelivery, fast.pk)
    assert WebhookDelivery.objects.get(pk=fast.pk).claim_token == fast_token
    assert WebhookDelivery.objects.get(pk=fast.pk).next_attempt_at == clock() + timedelta(seconds=90)
    for name in ("retry_count", "next_trigger", "state", "attempts_count", "created_at"):
        assert getattr(plain, name) == getattr(fast, name), name
    assert model_to_dict(plain.endpoint) == model_to_dict(fast.endpoint)
    assert fast.endpoint.event_types == ["*"]  # JSON converted, not the raw text
    assert fast.event.payload.endswith('"data":{"n":1,"text":"é"}}')
    assert fast.event.created_at == plain.event.created_at == clock()
    assert "data" in fast.event.get_deferred_fields()


@pytest.mark.parametrize("path", CLAIMS)
def test_each_claim_takes_a_due_delivery_once(twins, clock, path):
    claim = CLAIMS[path]
    assert _claim(claim, twins[0], clock, uuid.uuid4().hex) is not None
    assert _claim(claim, twins[0], clock, uuid.uuid4().hex) is None


@pytest.mark.parametrize("path", CLAIMS)
@pytest.mark.parametrize("change", ["not due", "succeeded", "endpoint disabled", "deleted"])
def test_each_claim_refuses_what_is_not_due(twins, clock, path, change):
    delivery = twins[0]
    rows = WebhookDelivery.objects.filter(pk=delivery.pk)
    if change == "not due":
        rows.update(next_attempt_at=clock() + timedelta(seconds=1))
    elif change == "succeeded":
        rows.update(state="succeeded")
    elif change == "endpoint disabled":
        WebhookEndpoint.objects.update(enabled=False)
    else:
        rows.delete()
    assert _claim(CLAIMS[path], delivery, clock, uuid.uuid4().hex) is None


def test_both_success_records_write_the_same_rows(twins, clock):
    result = network.SendResult(status_code=204, body=b"merci", latency_ms=12)
    finished = clock() + timedelta(milliseconds=40)
    common = {
        "attempts_count": F("attempts_count") + 1,
        "last_attempt_at": clock(),
        "last_status_code": 204,
        "last_error": "",
    }
    plain, fast = (_claim(_claim_and_load, d, clock, uuid.uuid4().hex) for d in twins)
    with transaction.atomic():
        _record_success(delivery=plain, finished=finished, common=common)
        plain_attempt = _attempt_row(delivery=plain, result=result, started=clock(), next_at=None, task_id="t")
    fast_attempt = _attempt_row(delivery=fast, result=result, started=clock(), next_at=None, task_id="t", save=False)
    fast_attempt = single_statement.record_success(
        delivery=fast, attempt=fast_attempt, values=_success_values(finished, common)
    )
    assert _row(WebhookDelivery, plain.pk) == _row(WebhookDelivery, fast.pk)
    assert WebhookDelivery.objects.get(pk=fast.pk).state == "succeeded"
    assert WebhookDelivery.objects.get(pk=fast.pk).attempts_count == 1
    assert fast_attempt.pk
    assert not fast_attempt._state.adding
    assert WebhookDeliveryAttempt.objects.get(pk=fast_attempt.pk).delivery_id == fast.pk
    assert _row(WebhookDeliveryAttempt, plain_attempt.pk) == _row(WebhookDeliveryAttempt, fast_attempt.pk)
    public_ids = {WebhookDeliveryAttempt.objects.get(pk=a.pk).public_id for a in (plain_attempt, fast_attempt)}
    assert len(public_ids) == 2
    assert all(p.startswith("wha") for p in public_ids)


def test_the_setting_switches_the_single_statements_off(rivya_settings):
    """RIVYA_WEBHOOKS["SINGLE_STATEMENT"] = False runs the plain ORM path on every database."""
    assert single_statement.one_statement_available() == (connection.vendor == "postgresql")
    rivya_settings("RIVYA_WEBHOOKS", SINGLE_STATEMENT=False)
    assert not single_statement.one_statement_available()
