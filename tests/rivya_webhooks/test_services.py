"""Endpoints and publishing: validation, subscriptions, the outbox and its transaction."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import DatabaseError, transaction

from rivya_webhooks.exceptions import (
    BlockedDestinationError,
    EndpointDisabledError,
    InvalidEventTypesError,
    InvalidWebhookURLError,
    NothingToRedeliverError,
    PayloadTooLargeError,
    UnknownEventTypeError,
    UnresolvableHostError,
)
from rivya_webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from rivya_webhooks.registry import event_type_register, event_type_unregister, event_types
from rivya_webhooks.services import (
    webhook_deliveries_sweep,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_test,
    webhook_endpoint_update,
    webhook_event_publish,
    webhook_event_redeliver,
    webhook_events_cleanup,
)
from rivya_webhooks.services.publishing import _publish_joined
from tests.rivya_webhooks.support import PUBLIC_IP

pytestmark = pytest.mark.django_db

URL = "https://hooks.example.com/rivya"


@pytest.fixture(autouse=True)
def _types():
    event_type_register("thing.created", "test")
    event_type_register("thing.deleted", "test")
    yield
    event_type_unregister("thing.created")
    event_type_unregister("thing.deleted")


@pytest.fixture(autouse=True)
def _resolver(rivya_settings, resolver):
    # The services' default resolver, for calls that do not pass one: no real DNS in tests.
    rivya_settings("RIVYA_WEBHOOKS", RESOLVER=resolver)


def test_builtin_types_are_registered():
    names = {item.name for item in event_types()}
    assert {"webhook.test", "webhook_endpoint.disabled"} <= names


def test_type_names_are_checked():
    with pytest.raises(ValueError, match="resource.action"):
        event_type_register("NoDots")


def test_create_returns_the_secret_once_and_stores_it_encrypted(account):
    endpoint, secret = webhook_endpoint_create(account=account, url=URL, event_types=["thing.created"])
    assert endpoint.public_id.startswith("we_")
    assert secret.startswith("whsec_")
    assert endpoint.enabled
    stored = WebhookEndpoint.objects.values().get(pk=endpoint.pk)
    assert secret not in json.dumps(stored, default=str)
    assert endpoint.signing_secrets(endpoint.created_at) == [secret]


def test_create_refuses_unknown_and_empty_types(account):
    with pytest.raises(UnknownEventTypeError) as info:
        webhook_endpoint_create(account=account, url=URL, event_types=["thing.created", "thing.exploded"])
    assert "thing.exploded" in str(info.value)
    assert info.value.param == "event_types"
    for bad in ([], "thing.created", [1]):
        with pytest.raises(InvalidEventTypesError):
            webhook_endpoint_create(account=account, url=URL, event_types=bad)
    assert not WebhookEndpoint.objects.exists()


def test_wildcard_and_duplicates_are_normalised(account):
    endpoint, _ = webhook_endpoint_create(account=account, url=URL, event_types=["thing.created", "*"])
    assert endpoint.event_types == ["*"]
    endpoint, _ = webhook_endpoint_create(account=account, url=URL, event_types=["thing.created"] * 3)
    assert endpoint.event_types == ["thing.created"]


def test_create_refuses_private_and_unresolvable_hosts(account, resolver):
    resolver.table["internal.example.com"] = ["10.0.0.8"]
    with pytest.raises(BlockedDestinationError):
        webhook_endpoint_create(account=account, url="https://internal.example.com/x", event_types=["*"])
    with pytest.raises(UnresolvableHostError):
        webhook_endpoint_create(account=account, url="https://nowhere.example.com/x", event_types=["*"])
    with pytest.raises(InvalidWebhookURLError):
        webhook_endpoint_create(account=account, url="http://hooks.example.com/x", event_types=["*"])
    assert not WebhookEndpoint.objects.exists()


def test_publish_fans_out_to_enabled_subscribed_endpoints_only(account, make_account, make_endpoint):
    every, _ = make_endpoint(URL, ["*"])
    created, _ = make_endpoint(URL, ["thing.created"])
    deleted, _ = make_endpoint(URL, ["thing.deleted"])
    disabled, _ = make_endpoint(URL, ["*"])
    webhook_endpoint_update(endpoint=disabled, enabled=False)
    make_endpoint(URL, ["*"], account=make_account())  # another account's

    event = webhook_event_publish(account=account, type="thing.created", data={"thing": 1})
    targets = set(event.deliveries.values_list("endpoint_id", flat=True))
    assert targets == {every.pk, created.pk}
    assert all(d.state == "pending" for d in event.deliveries.all())


def test_envelope_is_exact_compact_json(account):
    event = webhook_event_publish(account=account, type="thing.created", data={"name": "café", "n": [1, 2]})
    assert event.public_id.startswith("evt_")
    assert "." not in event.public_id
    envelope = json.loads(event.payload)
    assert list(envelope) == ["id", "type", "created_at", "data"]
    assert envelope["id"] == event.public_id
    assert envelope["type"] == "thing.created"
    assert envelope["created_at"].endswith("Z")
    assert envelope["data"] == {"name": "café", "n": [1, 2]}
    created = envelope["created_at"]
    expected = (
        f'{{"id":"{event.public_id}","type":"thing.created","created_at":"{created}",'
        '"data":{"name":"café","n":[1,2]}}'
    )
    assert event.payload == expected
    assert WebhookEvent.objects.get(pk=event.pk).payload == event.payload


def test_publish_refuses_unknown_types_and_oversized_payloads(account, rivya_settings):
    with pytest.raises(UnknownEventTypeError):
        webhook_event_publish(account=account, type="thing.unknown", data={})
    rivya_settings("RIVYA_WEBHOOKS", MAX_PAYLOAD_BYTES=100)
    with pytest.raises(PayloadTooLargeError):
        webhook_event_publish(account=account, type="thing.created", data={"blob": "x" * 200})
    assert not WebhookEvent.objects.exists()


def test_rollback_leaves_nothing_and_queues_nothing(account, make_endpoint, django_capture_on_commit_callbacks):
    make_endpoint(URL, ["*"])
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError):  # noqa: PT012 (the block is the caller's transaction)
            with transaction.atomic():
                webhook_event_publish(account=account, type="thing.created", data={})
                raise RuntimeError("the caller's change failed")
    assert not WebhookEvent.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert callbacks == []

    with django_capture_on_commit_callbacks() as callbacks:
        with transaction.atomic():
            webhook_event_publish(account=account, type="thing.created", data={})
        assert WebhookDelivery.objects.count() == 1
    assert len(callbacks) == 1  # the delivery is queued by the commit, not before


def test_update_changes_and_revalidates(account, make_endpoint, resolver):
    endpoint, _ = make_endpoint(URL, ["thing.created"])
    resolver.table["internal.example.com"] = ["192.168.0.4"]
    with pytest.raises(BlockedDestinationError):
        webhook_endpoint_update(endpoint=endpoint, url="https://internal.example.com/x")
    with pytest.raises(UnknownEventTypeError):
        webhook_endpoint_update(endpoint=endpoint, event_types=["nope.nope"])
    updated = webhook_endpoint_update(
        endpoint=endpoint, url="https://hooks.example.com/v2", event_types=["*"], description="main"
    )
    assert (updated.url, updated.event_types, updated.description) == ("https://hooks.example.com/v2", ["*"], "main")


def test_reenabling_resumes_paused_deliveries(account, make_endpoint, clock):
    endpoint, _ = make_endpoint(URL, ["*"])
    webhook_endpoint_update(endpoint=endpoint, enabled=False, clock=clock)
    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "manual"
    webhook_event_publish(account=account, type="thing.created", data={}, endpoints=[endpoint], clock=clock)
    clock.advance(minutes=10)
    assert webhook_deliveries_sweep(clock=clock) == 0  # paused while disabled
    endpoint.failing_since = clock()
    endpoint.save()
    webhook_endpoint_update(endpoint=endpoint, enabled=True, clock=clock)
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert endpoint.failing_since is None
    assert endpoint.disabled_reason == ""
    delivery = WebhookDelivery.objects.get()
    assert delivery.dispatched_for == clock()  # queued again on enabling


def test_rotation_keeps_the_old_secret_for_the_overlap(account, make_endpoint, clock, rivya_settings):
    endpoint, first = make_endpoint(URL, ["*"], clock=clock)
    endpoint, second = webhook_endpoint_rotate_secret(endpoint=endpoint, clock=clock)
    assert second != first
    assert endpoint.signing_secrets(clock()) == [second, first]
    assert endpoint.signing_secrets(clock() + timedelta(hours=23, minutes=59)) == [second, first]
    assert endpoint.signing_secrets(clock() + timedelta(hours=24)) == [second]
    endpoint, third = webhook_endpoint_rotate_secret(endpoint=endpoint, clock=clock)
    assert endpoint.signing_secrets(clock()) == [third, second]
    rivya_settings("RIVYA_WEBHOOKS", SECRET_ROTATION_OVERLAP=0)
    endpoint, fourth = webhook_endpoint_rotate_secret(endpoint=endpoint, clock=clock)
    assert endpoint.signing_secrets(clock()) == [fourth]


def test_test_action_targets_only_its_endpoint_whatever_it_subscribes_to(account, make_endpoint):
    target, _ = make_endpoint(URL, ["thing.deleted"])
    other, _ = make_endpoint(URL, ["*"])
    event = webhook_endpoint_test(endpoint=target)
    assert event.type == "webhook.test"
    assert list(event.deliveries.values_list("endpoint_id", flat=True)) == [target.pk]
    assert event.data["endpoint_id"] == target.public_id
    webhook_endpoint_update(endpoint=target, enabled=False)
    target.refresh_from_db()
    with pytest.raises(EndpointDisabledError):
        webhook_endpoint_test(endpoint=target)


def test_redeliver_rearms_enabled_deliveries(account, make_endpoint, clock):
    first, _ = make_endpoint(URL, ["*"])
    second, _ = make_endpoint(URL, ["*"])
    later, _ = make_endpoint(URL, ["thing.deleted"])
    event = webhook_event_publish(account=account, type="thing.created", data={}, clock=clock)
    WebhookDelivery.objects.filter(endpoint=first).update(state="succeeded", next_attempt_at=None)
    WebhookDelivery.objects.filter(endpoint=second).update(state="failed", next_attempt_at=None, retry_count=10)
    clock.advance(days=4)
    deliveries = webhook_event_redeliver(event=event, clock=clock)
    assert {d.endpoint_id for d in deliveries} == {first.pk, second.pk}
    for delivery in deliveries:
        assert (delivery.state, delivery.retry_count, delivery.next_trigger) == ("pending", 0, "manual")
        assert delivery.next_attempt_at == clock()
    # One endpoint only, even one that never had a delivery of this event.
    (extra,) = webhook_event_redeliver(event=event, endpoint=later, clock=clock)
    assert extra.endpoint_id == later.pk
    webhook_endpoint_update(endpoint=later, enabled=False)
    later.refresh_from_db()
    with pytest.raises(EndpointDisabledError):
        webhook_event_redeliver(event=event, endpoint=later)


def test_redeliver_with_no_enabled_endpoint(account, make_endpoint):
    endpoint, _ = make_endpoint(URL, ["*"])
    event = webhook_event_publish(account=account, type="thing.created", data={})
    webhook_endpoint_update(endpoint=endpoint, enabled=False)
    with pytest.raises(NothingToRedeliverError):
        webhook_event_redeliver(event=event)


def test_delete_stops_its_deliveries_but_keeps_events(account, make_endpoint):
    endpoint, _ = make_endpoint(URL, ["*"])
    event = webhook_event_publish(account=account, type="thing.created", data={})
    webhook_endpoint_delete(endpoint=endpoint)
    assert WebhookEvent.objects.filter(pk=event.pk).exists()
    assert not WebhookDelivery.objects.exists()


def test_sweeper_queues_due_rows_not_carried_by_a_message(account, make_endpoint, clock, rivya_settings):
    rivya_settings("RIVYA_WEBHOOKS", REDISPATCH_AFTER=300)
    make_endpoint(URL, ["*"])
    webhook_event_publish(account=account, type="thing.created", data={}, clock=clock)
    # Just queued on commit: the sweeper leaves it to that message.
    assert webhook_deliveries_sweep(clock=clock) == 0
    clock.advance(seconds=299)
    assert webhook_deliveries_sweep(clock=clock) == 0
    # The message should have been picked up by now: presumed lost, queued again, once.
    clock.advance(seconds=2)
    assert webhook_deliveries_sweep(clock=clock) == 1
    assert webhook_deliveries_sweep(clock=clock) == 0
    # A long retry is never carried by a message: due means queued.
    WebhookDelivery.objects.update(dispatched_for=None, next_attempt_at=clock() + timedelta(hours=2))
    assert webhook_deliveries_sweep(clock=clock) == 0
    clock.advance(hours=2)
    assert webhook_deliveries_sweep(clock=clock) == 1


def test_cleanup_keeps_thirty_days_and_unfinished_work(account, make_endpoint, clock):
    endpoint, _ = make_endpoint(URL, ["*"])
    old = webhook_event_publish(account=account, type="thing.created", data={}, clock=clock)
    stuck = webhook_event_publish(account=account, type="thing.created", data={}, clock=clock)
    WebhookDelivery.objects.filter(event=old).update(state="succeeded", next_attempt_at=None)
    clock.advance(days=29, hours=23)
    recent = webhook_event_publish(account=account, type="thing.created", data={}, clock=clock)
    assert webhook_events_cleanup(clock=clock) == 0
    clock.advance(hours=2)
    assert webhook_events_cleanup(clock=clock) == 1
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {stuck.pk, recent.pk}
    assert PUBLIC_IP  # the fixture resolver maps hooks.example.com to a public address


def test_rivyas_finish_path_publishes_in_the_callers_transaction_with_no_savepoint(
    account, make_endpoint, django_assert_num_queries
):
    """The private entry point of the generation's finish: an INSERT, the endpoints' read and the
    deliveries', no savepoint; the public function keeps its savepoint (SAVEPOINT and RELEASE)."""
    make_endpoint(URL, ["*"])
    with transaction.atomic(), django_assert_num_queries(3) as queries:
        _publish_joined(account=account, type="thing.created", data={})
    assert not [query for query in queries.captured_queries if "SAVEPOINT" in query["sql"]]
    with transaction.atomic(), django_assert_num_queries(5) as queries:
        webhook_event_publish(account=account, type="thing.created", data={})
    assert len([query for query in queries.captured_queries if "SAVEPOINT" in query["sql"]]) == 2
    assert WebhookDelivery.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_host_caller_that_tolerates_a_publish_error_keeps_its_own_work(account):
    """webhook_event_publish is public: a host may publish inside its own transaction and treat the
    event as best effort. Its failure rolls back its own savepoint only, never the host's work."""
    with transaction.atomic():
        endpoint, _ = webhook_endpoint_create(account=account, url=URL, event_types=["*"])
        with pytest.raises(DatabaseError):  # caught, as a best-effort host would
            # A NUL in a JSON string: PostgreSQL's jsonb refuses it (DataError) inside publish's block.
            webhook_event_publish(account=account, type="thing.created", data={"note": "a\x00b"})
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not WebhookEvent.objects.exists()
