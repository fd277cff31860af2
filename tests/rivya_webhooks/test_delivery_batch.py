"""A batch message's deliveries claimed and recorded in one statement each (PostgreSQL),
against the plain path (one attempt at a time) that every other database runs.

The statements are compared with the plain path's steps on twin deliveries; whole batches
are run both ways (``BATCH_STATEMENTS`` on and off) against the same receiver behaviour and
must leave the same rows and queue the same messages.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models import F
from django.forms.models import model_to_dict

from rivya_webhooks import network
from rivya_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import delivery_batch, single_statement, webhook_deliveries_attempt, webhook_event_publish
from rivya_webhooks.services.delivery import _attempt_row, _claim_and_load, _record_success, _success_values
from tests.rivya_webhooks.receiver import Reply

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_targets")]
postgres = pytest.mark.postgres

DELIVERY_SKIP = {"id", "public_id", "event", "endpoint", "claim_token"}
ATTEMPT_SKIP = {"id", "public_id", "delivery", "url", "task_id"}


@pytest.fixture(autouse=True)
def _types():
    event_type_register("thing.created", "test")
    yield
    event_type_unregister("thing.created")


def _publish(account, endpoint, count, clock=None):
    with transaction.atomic():
        for n in range(count):
            webhook_event_publish(
                account=account, type="thing.created", data={"n": n, "text": "é"}, endpoints=[endpoint], clock=clock
            )
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("pk", flat=True))


def _rows(model, skip, **filters):
    rows = model.objects.filter(**filters).order_by("pk")
    return [{k: v for k, v in model_to_dict(row).items() if k not in skip} for row in rows]


def _lease(clock):
    return {"now": clock(), "lease_until": clock() + timedelta(seconds=90), "token": uuid.uuid4().hex}


@postgres
def test_claim_many_leaves_the_rows_and_loads_the_deliveries_the_plain_claim_does(account, clock, make_endpoint):
    plain_endpoint, _ = make_endpoint("http://127.0.0.1:9/plain", ["*"])
    fast_endpoint, _ = make_endpoint("http://127.0.0.1:9/fast", ["*"])
    plain_ids, fast_ids = _publish(account, plain_endpoint, 3, clock), _publish(account, fast_endpoint, 3, clock)
    lease = _lease(clock)
    plain = [_claim_and_load(delivery_id=pk, **lease) for pk in plain_ids]
    fast = single_statement.claim_many(delivery_ids=list(reversed(fast_ids)), **lease)
    assert [d.pk for d in fast] == list(reversed(fast_ids))  # in the order asked
    assert _rows(WebhookDelivery, DELIVERY_SKIP, endpoint=plain_endpoint) == _rows(
        WebhookDelivery, DELIVERY_SKIP, endpoint=fast_endpoint
    )
    assert set(WebhookDelivery.objects.filter(pk__in=fast_ids).values_list("claim_token", flat=True)) == {
        lease["token"]
    }
    for p, f in zip(plain, reversed(fast), strict=True):
        for name in ("retry_count", "next_trigger", "state", "attempts_count", "created_at"):
            assert getattr(p, name) == getattr(f, name), name
        assert f.event.pk == f.event_id
        assert f.event.payload.endswith('"text":"é"}}')
        assert "data" in f.event.get_deferred_fields()
        stored = WebhookEndpoint.objects.get(pk=f.endpoint_id)
        assert model_to_dict(f.endpoint) == model_to_dict(stored)
        assert f.endpoint.secret_encrypted == stored.secret_encrypted
        assert f.endpoint.event_types == ["*"]  # JSON converted, not the raw text
    assert len({id(d.endpoint) for d in fast}) == 1  # one endpoint instance for the batch
    assert single_statement.claim_many(delivery_ids=fast_ids, **_lease(clock)) == []  # claimed once


@postgres
@pytest.mark.parametrize("change", ["not due", "succeeded", "endpoint disabled", "deleted"])
def test_claim_many_leaves_out_what_is_not_due(account, clock, make_endpoint, change):
    endpoint, _ = make_endpoint("http://127.0.0.1:9/a", ["*"])
    ids = _publish(account, endpoint, 3, clock)
    rows = WebhookDelivery.objects.filter(pk=ids[1])
    if change == "not due":
        rows.update(next_attempt_at=clock() + timedelta(seconds=1))
    elif change == "succeeded":
        rows.update(state="succeeded")
    elif change == "endpoint disabled":
        WebhookEndpoint.objects.update(enabled=False)
    else:
        rows.delete()
    claimed = [d.pk for d in single_statement.claim_many(delivery_ids=ids, **_lease(clock))]
    assert claimed == ([] if change == "endpoint disabled" else [ids[0], ids[2]])


@postgres
@pytest.mark.django_db(transaction=True)
def test_claim_many_skips_a_row_another_transaction_holds(account, clock, make_endpoint):
    endpoint, _ = make_endpoint("http://127.0.0.1:9/a", ["*"])
    ids = _publish(account, endpoint, 3, clock)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(WebhookDelivery.objects.select_for_update().filter(pk=ids[1]))
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        claimed = [d.pk for d in single_statement.claim_many(delivery_ids=ids, **_lease(clock))]
    finally:
        release.set()
        holder.join(10)
    assert claimed == [ids[0], ids[2]]  # without waiting for the lock
    assert WebhookDelivery.objects.get(pk=ids[1]).claim_token == ""


@postgres
def test_record_successes_writes_the_rows_the_plain_record_does(account, clock, make_endpoint):
    plain_endpoint, _ = make_endpoint("http://127.0.0.1:9/plain", ["*"])
    fast_endpoint, _ = make_endpoint("http://127.0.0.1:9/fast", ["*"])
    plain_ids, fast_ids = _publish(account, plain_endpoint, 2, clock), _publish(account, fast_endpoint, 2, clock)
    lease = _lease(clock)
    pairs = []
    for n, (plain_id, fast_id) in enumerate(zip(plain_ids, fast_ids, strict=True)):
        result = network.SendResult(status_code=200 + n, body=b"merci", latency_ms=12 + n)
        started, finished = clock() + timedelta(seconds=n), clock() + timedelta(seconds=n, milliseconds=40)
        common = {"attempts_count": F("attempts_count") + 1, "last_attempt_at": started}
        common |= {"last_status_code": result.status_code, "last_error": ""}
        plain = _claim_and_load(delivery_id=plain_id, **lease)
        with transaction.atomic():
            _record_success(delivery=plain, finished=finished, common=common)
            _attempt_row(delivery=plain, result=result, started=started, next_at=None, task_id="t")
        [fast] = single_statement.claim_many(delivery_ids=[fast_id], **lease)
        attempt = _attempt_row(delivery=fast, result=result, started=started, next_at=None, task_id="t", save=False)
        pairs.append((attempt, finished))
        assert _success_values(finished, common)["succeeded_at"] == finished
    single_statement.record_successes(successes=pairs)
    assert _rows(WebhookDelivery, DELIVERY_SKIP, endpoint=plain_endpoint) == _rows(
        WebhookDelivery, DELIVERY_SKIP, endpoint=fast_endpoint
    )
    assert _rows(WebhookDeliveryAttempt, ATTEMPT_SKIP, delivery__endpoint=plain_endpoint) == _rows(
        WebhookDeliveryAttempt, ATTEMPT_SKIP, delivery__endpoint=fast_endpoint
    )
    attempts = WebhookDeliveryAttempt.objects.filter(delivery__endpoint=fast_endpoint)
    assert sorted(a.delivery_id for a in attempts) == fast_ids
    assert all(a.public_id.startswith("wha") for a in attempts)


def _run_batch(account, make_endpoint, receiver, clock, path, captured, failing):
    """Five deliveries to a new endpoint as one batch: what was made, the rows, the messages queued."""
    endpoint, _ = make_endpoint(receiver.url(f"/{path}"), ["*"])
    if failing:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=clock() - timedelta(hours=1))
    ids = _publish(account, endpoint, 5, clock)
    with captured() as callbacks:
        made = webhook_deliveries_attempt(delivery_ids=ids, clock=clock, rng=random.Random(7))
    deliveries = _rows(WebhookDelivery, DELIVERY_SKIP, endpoint=endpoint)
    attempts = _rows(WebhookDeliveryAttempt, ATTEMPT_SKIP | {"latency_ms"}, delivery__endpoint=endpoint)
    failing_since = WebhookEndpoint.objects.get(pk=endpoint.pk).failing_since
    return made, deliveries, attempts, len(callbacks), failing_since


@postgres
@pytest.mark.parametrize("answers", ["all succeed", "third fails", "first fails", "failing endpoint recovers"])
def test_a_batch_leaves_the_rows_and_messages_the_plain_path_does(
    account, make_endpoint, receiver, clock, rivya_settings, django_capture_on_commit_callbacks, answers
):
    def behaviour(request):
        n = int(request.body.split(b'"n":')[1].split(b",")[0])
        failing = (answers == "third fails" and n == 2) or (answers == "first fails" and n == 0)
        return Reply(status=500 if failing else 200, body=b"no" if failing else b"ok")

    receiver.behaviour = behaviour
    outcomes = {}
    for path, batched in (("plain", False), ("batched", True)):
        rivya_settings("RIVYA_WEBHOOKS", BATCH_STATEMENTS=batched)
        assert single_statement.many_available() == batched
        outcomes[path] = _run_batch(
            account,
            make_endpoint,
            receiver,
            clock,
            path,
            django_capture_on_commit_callbacks,
            failing=answers == "failing endpoint recovers",
        )
    assert outcomes["batched"] == outcomes["plain"]
    made, deliveries, attempts, messages, failing_since = outcomes["batched"]
    assert failing_since == (None if made == 5 else clock())
    assert made == {"all succeed": 5, "third fails": 3, "first fails": 1, "failing endpoint recovers": 5}[answers]
    assert len(attempts) == made
    assert messages == (0 if made == 5 else 2)  # the failure's retry, then the rest one message each


@postgres
def test_the_rest_is_handed_back_once_the_lease_is_too_short(
    account, make_endpoint, receiver, clock, rivya_settings, django_capture_on_commit_callbacks
):
    """An attempt starts only with TIMEOUT + 60 s of the lease left: a batch whose sends are
    slow hands its rest back (due, unclaimed) and queues it one message each."""
    rivya_settings("RIVYA_WEBHOOKS", TIMEOUT=10)

    def slow(request):
        clock.advance(seconds=6)
        return Reply()

    receiver.behaviour = slow
    endpoint, _ = make_endpoint(receiver.url(), ["*"])
    ids = _publish(account, endpoint, 4, clock)
    with django_capture_on_commit_callbacks() as callbacks:
        assert webhook_deliveries_attempt(delivery_ids=ids, clock=clock) == 2  # at 0 s and 6 s; not at 12 s
    states = dict(WebhookDelivery.objects.values_list("pk", "state"))
    assert [states[pk] for pk in ids] == ["succeeded", "succeeded", "pending", "pending"]
    rest = WebhookDelivery.objects.filter(pk__in=ids[2:])
    assert {(d.claim_token, d.next_attempt_at, d.dispatched_for) for d in rest} == {("", clock(), clock())}
    assert len(callbacks) == 1  # the rest, one message each


@postgres
def test_successes_are_recorded_at_least_every_record_every(account, make_endpoint, receiver, clock, monkeypatch):
    endpoint, _ = make_endpoint(receiver.url(), ["*"])
    ids = _publish(account, endpoint, 3, clock)
    recorded = []
    record = single_statement.record_successes
    monkeypatch.setattr(
        single_statement,
        "record_successes",
        lambda successes: (recorded.append(len(successes)), record(successes=successes)),
    )
    assert webhook_deliveries_attempt(delivery_ids=ids[:2], clock=clock) == 2
    assert recorded == [2]  # one statement for the batch
    monkeypatch.setattr(delivery_batch, "RECORD_EVERY", 0.0)
    more = _publish(account, endpoint, 2, clock)
    assert webhook_deliveries_attempt(delivery_ids=[ids[2], *more[-2:]], clock=clock) == 3
    assert recorded == [2, 1, 1, 1]
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"succeeded"}


def test_the_settings_switch_the_batch_statements_off(rivya_settings):
    """BATCH_STATEMENTS (and SINGLE_STATEMENT) False: one attempt at a time, on every database."""
    assert single_statement.many_available() == (connection.vendor == "postgresql")
    rivya_settings("RIVYA_WEBHOOKS", BATCH_STATEMENTS=False)
    assert not single_statement.many_available()
    rivya_settings("RIVYA_WEBHOOKS", BATCH_STATEMENTS=True, SINGLE_STATEMENT=False)
    assert not single_statement.many_available()


@postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batched", [True, False])
def test_no_pooled_connection_is_held_while_a_receiver_answers(
    account, make_endpoint, receiver, clock, rivya_settings, monkeypatch, batched
):
    """Also after successes were recorded mid-batch (RECORD_EVERY 0: after each one)."""
    assert connection.settings_dict["OPTIONS"].get("pool")
    rivya_settings("RIVYA_WEBHOOKS", BATCH_STATEMENTS=batched)
    monkeypatch.setattr(delivery_batch, "RECORD_EVERY", 0.0)
    held, worker_connection = [], connections["default"]  # this thread's: the receiver answers from another

    def answer(request):
        held.append(worker_connection.connection is not None)
        return Reply()

    receiver.behaviour = answer
    endpoint, _ = make_endpoint(receiver.url(), ["*"])
    ids = _publish(account, endpoint, 3, clock)
    assert webhook_deliveries_attempt(delivery_ids=ids, clock=clock) == 3
    assert held == [False, False, False]
