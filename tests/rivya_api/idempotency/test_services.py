"""The claim / complete / release protocol, with an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from rivya_api.idempotency import services
from rivya_api.idempotency.models import IdempotencyRecord
from rivya_api.idempotency.services import ClaimOutcome
from rivya_api.idempotency.tasks import idempotency_records_purge_task

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LEASE = 300
RETENTION = 24 * 3600


def claim(account, key="k-1", fingerprint="fp-a", now=T0):
    return services.idempotency_claim(
        account=account, key=key, fingerprint=fingerprint, request_method="POST", request_path="/x", now=now
    )


def complete(record, status=201, body=b'{"id":"thing_1"}', now=T0):
    return services.idempotency_complete(
        record=record, status_code=status, headers={"Content-Type": "application/json"}, body=body, now=now
    )


def test_first_claim_proceeds_with_a_lease_and_retention(account):
    result = claim(account)
    assert result.outcome is ClaimOutcome.PROCEED
    record = IdempotencyRecord.objects.get()
    assert record.state == IdempotencyRecord.State.IN_FLIGHT
    assert record.lease_token == result.record.lease_token
    assert record.locked_until == T0 + timedelta(seconds=LEASE)
    assert record.expires_at == T0 + timedelta(seconds=RETENTION)
    assert (record.request_method, record.request_path) == ("POST", "/x")


def test_retry_while_running_is_in_flight_with_retry_after(account):
    claim(account)
    result = claim(account, now=T0 + timedelta(seconds=5))
    assert result.outcome is ClaimOutcome.IN_FLIGHT
    assert result.retry_after == 1
    assert IdempotencyRecord.objects.count() == 1
    # Only the claim's owner may settle it.
    assert not services.idempotency_release(record=result.record)
    assert not complete(result.record)
    assert not services.idempotency_renew(record=result.record)
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.IN_FLIGHT


def test_retry_after_never_points_past_the_lease(account, rivya_settings):
    rivya_settings("RIVYA_API", IDEMPOTENCY_RETRY_AFTER_SECONDS=30)
    claim(account)
    assert claim(account, now=T0 + timedelta(seconds=LEASE - 10)).retry_after == 10
    assert claim(account, now=T0 + timedelta(seconds=LEASE - 0.5)).retry_after == 1


def test_other_fingerprint_is_a_mismatch_even_while_running(account):
    claim(account)
    assert claim(account, fingerprint="fp-b").outcome is ClaimOutcome.MISMATCH


def test_completed_key_replays_the_stored_response(account):
    first = claim(account)
    assert complete(first.record, status=201)
    result = claim(account, now=T0 + timedelta(hours=23))
    assert result.outcome is ClaimOutcome.REPLAY
    assert result.record.response_status == 201
    assert bytes(result.record.response_body) == b'{"id":"thing_1"}'
    assert result.record.response_headers == {"Content-Type": "application/json"}
    assert claim(account, fingerprint="fp-b", now=T0 + timedelta(hours=23)).outcome is ClaimOutcome.MISMATCH


def test_errors_are_stored_and_replayed_like_successes(account):
    complete(claim(account).record, status=500, body=b'{"error":{}}')
    replay = claim(account)
    assert replay.outcome is ClaimOutcome.REPLAY
    assert replay.record.response_status == 500


def test_release_frees_the_key_for_any_request(account):
    first = claim(account)
    assert services.idempotency_release(record=first.record)
    assert not IdempotencyRecord.objects.exists()
    assert claim(account, fingerprint="fp-corrected").outcome is ClaimOutcome.PROCEED


def test_same_key_in_another_account_is_independent(make_account):
    one, two = make_account(), make_account()
    complete(claim(one).record)
    assert claim(two).outcome is ClaimOutcome.PROCEED
    assert claim(two, fingerprint="fp-other").outcome is ClaimOutcome.MISMATCH
    assert claim(one).outcome is ClaimOutcome.REPLAY


def test_stale_lease_of_a_dead_attempt_is_taken_over_once(account):
    dead = claim(account)
    just_before = T0 + timedelta(seconds=LEASE - 1)
    assert claim(account, now=just_before).outcome is ClaimOutcome.IN_FLIGHT
    after = T0 + timedelta(seconds=LEASE)
    retry = claim(account, now=after)
    assert retry.outcome is ClaimOutcome.PROCEED
    assert retry.record.lease_token != dead.record.lease_token
    assert retry.record.locked_until == after + timedelta(seconds=LEASE)
    # Retention still counts from the first attempt.
    assert retry.record.expires_at == T0 + timedelta(seconds=RETENTION)
    # The next retry sees the new owner's live lease.
    assert claim(account, now=after).outcome is ClaimOutcome.IN_FLIGHT
    # A zombie first attempt can neither store its outcome nor free the key.
    assert not complete(dead.record, status=201, body=b"zombie")
    assert not services.idempotency_release(record=dead.record)
    assert not services.idempotency_renew(record=dead.record, now=after)
    assert complete(retry.record, status=201, body=b"winner", now=after)
    assert bytes(claim(account, now=after).record.response_body) == b"winner"


def test_running_request_can_name_its_work_for_retries(account):
    first = claim(account)
    assert services.idempotency_reference_set(record=first.record, reference="msg_live")
    retry = claim(account, now=T0 + timedelta(seconds=1))
    assert retry.outcome is ClaimOutcome.IN_FLIGHT
    assert retry.record.reference == "msg_live"
    # Only the owner may name it; a taken-over or expired claim starts blank.
    assert not services.idempotency_reference_set(record=retry.record, reference="msg_forged")
    takeover = claim(account, now=T0 + timedelta(seconds=LEASE))
    assert takeover.proceed
    complete(takeover.record, now=T0 + timedelta(seconds=LEASE))
    assert not services.idempotency_reference_set(record=takeover.record, reference="msg_late")
    fresh = claim(account, fingerprint="other", now=T0 + timedelta(seconds=RETENTION))
    assert fresh.record.reference == ""


def test_renew_extends_the_lease(account):
    first = claim(account)
    later = T0 + timedelta(seconds=LEASE - 1)
    assert services.idempotency_renew(record=first.record, now=later)
    assert claim(account, now=T0 + timedelta(seconds=LEASE + 60)).outcome is ClaimOutcome.IN_FLIGHT
    assert complete(first.record)


def test_expired_record_is_a_new_request(account):
    complete(claim(account).record)
    expiry = T0 + timedelta(seconds=RETENTION)
    fresh = claim(account, fingerprint="fp-new", now=expiry)
    assert fresh.outcome is ClaimOutcome.PROCEED
    record = IdempotencyRecord.objects.get()
    assert record.state == IdempotencyRecord.State.IN_FLIGHT
    assert record.fingerprint == "fp-new"
    assert record.response_status is None
    assert bytes(record.response_body) == b""
    assert record.created_at == expiry
    assert record.expires_at == expiry + timedelta(seconds=RETENTION)


def test_retention_and_lease_are_settings(account, rivya_settings):
    rivya_settings("RIVYA_API", IDEMPOTENCY_RETENTION_SECONDS=60, IDEMPOTENCY_LEASE_SECONDS=5)
    record = claim(account).record
    assert record.expires_at == T0 + timedelta(seconds=60)
    assert record.locked_until == T0 + timedelta(seconds=5)
    assert claim(account, now=T0 + timedelta(seconds=5)).outcome is ClaimOutcome.PROCEED


def test_purge_removes_only_expired_records(make_account):
    account = make_account()
    complete(claim(account, key="old").record)
    complete(claim(account, key="young", now=T0 + timedelta(hours=2)).record, now=T0 + timedelta(hours=2))
    # In flight across its own expiry, lease renewed: still running, kept.
    running = claim(account, key="running").record
    services.idempotency_renew(record=running, now=T0 + timedelta(seconds=RETENTION - 10))
    # In flight, expired and its lease dead too: removed.
    claim(account, key="abandoned")
    now = T0 + timedelta(seconds=RETENTION + 1)
    assert services.idempotency_records_purge(now=now, batch_size=1) == 2
    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"young", "running"}


def test_purge_task_uses_the_real_clock(account):
    record = claim(account, now=datetime.now(UTC) - timedelta(days=2)).record
    complete(record)
    claim(account, key="fresh", now=datetime.now(UTC))
    assert idempotency_records_purge_task() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


def test_purge_is_scheduled_by_beat(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "rivya_api.idempotency.tasks.idempotency_records_purge_task" in tasks
    from config.celery import app

    app.loader.import_default_modules()
    assert "rivya_api.idempotency.tasks.idempotency_records_purge_task" in app.tasks


@pytest.mark.django_db(transaction=True)
def test_async_wrappers_run_the_protocol(account):
    async def scenario():
        first = await services.aidempotency_claim(account=account, key="ak", fingerprint="f", now=T0)
        assert first.proceed
        assert (await services.aidempotency_claim(account=account, key="ak", fingerprint="f", now=T0)).outcome == (
            ClaimOutcome.IN_FLIGHT
        )
        assert await services.aidempotency_renew(record=first.record, now=T0)
        assert await services.aidempotency_reference_set(record=first.record, reference="msg_1")
        assert await services.aidempotency_complete(
            record=first.record, status_code=200, headers={}, body=b"done", now=T0
        )
        replay = await services.aidempotency_claim(account=account, key="ak", fingerprint="f", now=T0)
        assert replay.outcome is ClaimOutcome.REPLAY
        second = await services.aidempotency_claim(account=account, key="ak2", fingerprint="f", now=T0)
        assert await services.aidempotency_release(record=second.record)
        # The wrappers' thread keeps its connection, as Django's would between requests.
        await sync_to_async(connections.close_all)()

    asyncio.run(scenario())
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["ak"]
