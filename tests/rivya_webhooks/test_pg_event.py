"""Publishing with ``EVENT_INSERT_SQL`` (``services/pg_event.py``) against the plain ORM path.

Each case publishes the same event both ways, on twin accounts with the same endpoints, and
compares the event rows, the deliveries and the broker messages sent on commit: an account with
an endpoint subscribed to the type must get its delivery on both paths (nothing lost), one
with none, or only disabled or unsubscribed ones, none.
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from rivya_webhooks.models import WebhookDelivery, WebhookEvent
from rivya_webhooks.registry import event_type_register, event_type_unregister
from rivya_webhooks.services import pg_event, webhook_event_publish
from rivya_webhooks.services.endpoints import webhook_endpoint_update
from rivya_webhooks.services.publishing import _publish_joined

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_targets")]

TYPE = "thing.created"


@pytest.fixture(autouse=True)
def _types():
    event_type_register(TYPE, "test")
    event_type_register("other.thing", "test")
    yield
    event_type_unregister(TYPE)
    event_type_unregister("other.thing")


def _endpoints(make_endpoint, account, case):
    """The endpoints of ``case`` for ``account``, in creation order."""
    if case in ("subscribed", "subscribed and disabled", "two"):
        make_endpoint("http://127.0.0.1:9/a", [TYPE], account=account)
    if case in ("wildcard", "two"):
        make_endpoint("http://127.0.0.1:9/b", ["*"], account=account)
    if case == "not subscribed":
        make_endpoint("http://127.0.0.1:9/c", ["other.thing"], account=account)
    if case in ("disabled", "subscribed and disabled"):
        endpoint, _ = make_endpoint("http://127.0.0.1:9/d", [TYPE], account=account)
        webhook_endpoint_update(endpoint=endpoint, enabled=False)


def _publish(account, clock, *, fast, publish):
    sent = []
    with (
        mock.patch("rivya_webhooks.tasks.webhook_delivery_attempt_task.apply_async", lambda args: sent.append(args)),
        mock.patch("rivya_webhooks.tasks.webhook_deliveries_attempt_task.apply_async", lambda args: sent.append(args)),
        override(fast),
    ):
        with transaction.atomic():
            event = publish(account=account, type=TYPE, data={"n": 1, "text": "é"}, clock=clock)
    return event, sent


def override(fast):
    from django.test import override_settings

    from rivya_webhooks.conf import webhooks_settings

    return override_settings(RIVYA_WEBHOOKS={**webhooks_settings.user_settings, "EVENT_INSERT_SQL": fast})


def _values(instance):
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def _event_row(event):
    row = WebhookEvent.objects.filter(pk=event.pk).values().get()
    row.pop("id"), row.pop("account_id")
    row["payload"] = row["payload"].replace(row.pop("public_id"), "evt")
    return row


def _deliveries(event):
    rows = []
    for delivery in WebhookDelivery.objects.filter(event=event).select_related("endpoint").order_by("endpoint__url"):
        row = {k: v for k, v in _values(delivery).items() if k not in ("id", "public_id", "event_id", "endpoint_id")}
        rows.append({**row, "url": delivery.endpoint.url})
    return rows


@pytest.mark.parametrize(
    "case", ["none", "subscribed", "wildcard", "two", "not subscribed", "disabled", "subscribed and disabled"]
)
@pytest.mark.parametrize("publish", [webhook_event_publish, _publish_joined], ids=["public", "joined"])
def test_fast_and_plain_publish_the_same_rows_and_messages(make_account, make_endpoint, clock, case, publish):
    plain_account, fast_account = make_account(), make_account()
    _endpoints(make_endpoint, plain_account, case)
    _endpoints(make_endpoint, fast_account, case)
    plain, plain_sent = _publish(plain_account, clock, fast=False, publish=publish)
    fast, fast_sent = _publish(fast_account, clock, fast=True, publish=publish)
    assert _event_row(fast) == _event_row(plain)
    assert _deliveries(fast) == _deliveries(plain)
    expected = {"none": 0, "not subscribed": 0, "disabled": 0, "two": 2}.get(case, 1)
    assert len(_deliveries(fast)) == expected
    assert len(fast_sent) == len(plain_sent) == expected
    assert _values(fast) == _values(WebhookEvent.objects.get(pk=fast.pk))
    assert not fast._state.adding


def test_an_account_without_endpoints_costs_one_statement(make_account, make_endpoint, clock):
    """The fast path is taken: the row and the probe in one statement (the plain path: two)."""
    account = make_account()
    make_endpoint("http://127.0.0.1:9/other", ["*"], account=make_account())  # another account's
    assert pg_event.enabled() is (connection.vendor == "postgresql")
    with override(True), CaptureQueriesContext(connection) as fast:
        webhook_event_publish(account=account, type=TYPE, data={}, clock=clock)
    with override(False), CaptureQueriesContext(connection) as plain:
        webhook_event_publish(account=account, type=TYPE, data={}, clock=clock)
    statements = [[q["sql"] for q in c if q["sql"] not in ("BEGIN", "COMMIT")] for c in (fast, plain)]
    assert len(statements[1]) == 2  # the INSERT, the endpoints' SELECT
    assert len(statements[0]) == (1 if connection.vendor == "postgresql" else 2)
    assert WebhookDelivery.objects.filter(event__account=account).count() == 0


def test_a_connected_receiver_gets_its_signals(make_account, clock):
    """A receiver for WebhookEvent (a host's, say) makes publishing take the plain path, which sends
    pre_save and post_save: the one statement sends neither."""
    from django.db.models.signals import post_save, pre_save

    account = make_account()
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append((kwargs["signal"], instance.public_id))

    for signal in (pre_save, post_save):
        signal.connect(receiver, sender=WebhookEvent, weak=False)
    try:
        assert pg_event.enabled() is False
        with override(True):
            event = webhook_event_publish(account=account, type=TYPE, data={}, clock=clock)
    finally:
        for signal in (pre_save, post_save):
            signal.disconnect(receiver, sender=WebhookEvent)
    assert seen == [(pre_save, event.public_id), (post_save, event.public_id)]
    assert pg_event.enabled() is True
