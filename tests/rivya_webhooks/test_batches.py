"""Deliveries published in one transaction are queued in batches, one message per endpoint.

The batch task sends in turn through the same service as a single message; after a
failure the rest of its batch goes back to one message each. End to end through a
real worker and Redis: tests/rivya_webhooks/test_worker.py publishes two events in one
transaction, which is one batch.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from rivya_webhooks.models import WebhookDelivery
from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import publishing, webhook_deliveries_attempt, webhook_event_publish
from tests.rivya_webhooks.receiver import Reply

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_targets")]


@pytest.fixture(autouse=True)
def _types():
    event_type_register("thing.created", "test")
    yield
    event_type_unregister("thing.created")


def _publish(account, count, endpoints=None):
    return [
        webhook_event_publish(account=account, type="thing.created", data={"n": n}, endpoints=endpoints)
        for n in range(count)
    ]


def _batches(callbacks):
    return [c.__self__ for c in callbacks if isinstance(getattr(c, "__self__", None), publishing._Batches)]


def _ids(endpoint):
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("pk", flat=True))


def test_one_transaction_queues_one_batch_per_endpoint(account, make_endpoint, django_capture_on_commit_callbacks):
    first, _ = make_endpoint("http://127.0.0.1:9/a", ["*"])
    second, _ = make_endpoint("http://127.0.0.1:9/b", ["*"])
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        _publish(account, 3)
        _publish(account, 2, endpoints=[second])
    [batches] = _batches(callbacks)
    assert batches == {first.pk: _ids(first), second.pk: _ids(second)}
    assert len(batches[first.pk]) == 3
    assert len(batches[second.pk]) == 5


def test_batches_are_cut_at_batch_size(account, make_endpoint, monkeypatch):
    endpoint, _ = make_endpoint("http://127.0.0.1:9/a", ["*"])
    sent = []
    monkeypatch.setattr(publishing, "BATCH_SIZE", 2)
    from rivya_webhooks import tasks

    monkeypatch.setattr(tasks.webhook_deliveries_attempt_task, "apply_async", lambda args: sent.append(args[0]))
    monkeypatch.setattr(tasks.webhook_delivery_attempt_task, "apply_async", lambda args: sent.append(args[0]))
    batches = publishing._Batches({endpoint.pk: [1, 2, 3, 4, 5]})
    batches.send()
    assert sent == [[1, 2], [3, 4], 5]


def test_a_rolled_back_savepoint_loses_no_message(account, make_endpoint, django_capture_on_commit_callbacks):
    endpoint, _ = make_endpoint("http://127.0.0.1:9/a", ["*"])
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        try:
            with transaction.atomic():
                _publish(account, 1)
                raise RuntimeError
        except RuntimeError:
            pass
        _publish(account, 2)
    assert [dict(b) for b in _batches(callbacks)] == [{endpoint.pk: _ids(endpoint)}]
    assert len(_ids(endpoint)) == 2


def test_inner_savepoint_publishes_join_the_outer_batch(account, make_endpoint, django_capture_on_commit_callbacks):
    endpoint, _ = make_endpoint("http://127.0.0.1:9/a", ["*"])
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        _publish(account, 1)
        with transaction.atomic():
            _publish(account, 2)
    assert [dict(b) for b in _batches(callbacks)] == [{endpoint.pk: _ids(endpoint)}]


def test_batch_sends_each_in_turn(account, receiver, make_endpoint):
    make_endpoint(receiver.url(), ["*"])
    events = _publish(account, 3)
    ids = list(WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True))
    assert webhook_deliveries_attempt(delivery_ids=ids) == 3
    assert [r.headers["webhook-id"] for r in receiver.requests] == [e.public_id for e in events]
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"succeeded"}
    assert webhook_deliveries_attempt(delivery_ids=ids) == 0  # nothing is sent twice
    assert len(receiver.requests) == 3


def test_after_a_failure_the_rest_go_one_message_each(
    account, receiver, make_endpoint, django_capture_on_commit_callbacks
):
    receiver.behaviour = lambda request: Reply(status=500)
    make_endpoint(receiver.url(), ["*"])
    _publish(account, 3)
    ids = list(WebhookDelivery.objects.order_by("pk").values_list("pk", flat=True))
    with django_capture_on_commit_callbacks() as callbacks:
        assert webhook_deliveries_attempt(delivery_ids=ids) == 1
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get(pk=ids[0]).retry_count == 1
    assert [WebhookDelivery.objects.get(pk=pk).attempts_count for pk in ids[1:]] == [0, 0]
    # The failed one's retry countdown, then the rest as single messages.
    assert len(callbacks) == 2


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_is_down_does_not_fail_the_commit(account, make_endpoint, monkeypatch, caplog):
    """The hook is robust: the commit stands, the error is logged, the sweeper queues the rows later.
    (Registered as an instance, Django's log line for a failed robust hook raised AttributeError:
    cancelling a generation answered 500 while Redis was down.)"""
    make_endpoint("http://127.0.0.1:9/a", ["*"])
    from rivya_webhooks import tasks

    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.webhook_deliveries_attempt_task, "apply_async", refuse)
    monkeypatch.setattr(tasks.webhook_delivery_attempt_task, "apply_async", refuse)
    with transaction.atomic():
        _publish(account, 2)
    assert WebhookDelivery.objects.filter(state="pending").count() == 2
    assert "broker down" in caplog.text
