"""The idempotency protocol: claim a key, then complete or release it.

A caller that received a request with an ``Idempotency-Key`` does::

    claim = idempotency_claim(account=..., key=..., fingerprint=...)
    match claim.outcome:
        PROCEED   -> run the request (optionally idempotency_reference_set / _renew
                     while it runs), then idempotency_complete(record=claim.record, ...)
                     (or idempotency_release(record=claim.record) if it was rejected
                     before execution, so the key is not consumed)
        REPLAY    -> answer claim.record's stored response
        IN_FLIGHT -> 409 idempotency_key_in_flight, Retry-After: claim.retry_after
                     (claim.record.reference names the running work, if its owner set it)
        MISMATCH  -> 422 idempotency_key_reused

Claiming is atomic in the database: the unique (account, key) constraint
decides between concurrent first attempts, from any number of processes, and
a compare-and-swap on ``lease_token`` decides between concurrent takeovers of
a stale lease (a claimer that died) or of an expired record. No per-process
lock is involved. Call these outside a transaction (the claim must be visible
to other processes as soon as it is made); ``idempotency_complete`` is a single
UPDATE, so it may also run inside the caller's transaction to commit the
outcome together with the work.

Every service has an ``a``-prefixed async twin for async views (chat streaming),
which runs it in a thread through ``sync_to_async``.
"""

from __future__ import annotations

import enum
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.utils import timezone

from rivya_api.conf import api_settings
from rivya_api.idempotency import sealing
from rivya_api.idempotency.models import IdempotencyRecord

logger = logging.getLogger(__name__)

# A claimer loops only when it loses a race (another retry took the stale lease
# first, or the sweeper purged the record it was reading); a handful is plenty.
_CLAIM_ATTEMPTS = 5


class ClaimOutcome(enum.StrEnum):
    PROCEED = "proceed"  # this caller owns the key: run the request
    REPLAY = "replay"  # finished before: answer the stored response
    IN_FLIGHT = "in_flight"  # another attempt is running: 409 + Retry-After
    MISMATCH = "mismatch"  # the key was used for a different request: 422


@dataclass(frozen=True)
class IdempotencyClaim:
    """What ``idempotency_claim`` decided, and the record it decided about.

    With ``PROCEED`` the record carries this caller's ``lease_token``: pass it to
    ``idempotency_complete`` / ``idempotency_release`` / ``idempotency_renew``
    / ``idempotency_reference_set``. Any other outcome's record has its token
    blanked, so those calls on it are refused (they return False): only the
    owner of a claim may settle it. With ``REPLAY`` the record carries the
    stored ``response_status``, ``response_headers`` and ``response_body`` (decrypted: the
    body is stored encrypted, see ``sealing``).
    """

    def __post_init__(self) -> None:
        if self.outcome is not ClaimOutcome.PROCEED:
            self.record.lease_token = None

    outcome: ClaimOutcome
    record: IdempotencyRecord
    retry_after: int = 0  # seconds; set for IN_FLIGHT

    @property
    def proceed(self) -> bool:
        return self.outcome is ClaimOutcome.PROCEED


def idempotency_claim(
    *,
    account: Any,
    key: str,
    fingerprint: str,
    request_method: str = "",
    request_path: str = "",
    now: datetime | None = None,
) -> IdempotencyClaim:
    """Claim ``key`` for ``account``, or say why this request must not run.

    Scope is the account, not the API key, so a retry made after the key was
    rolled still finds the first attempt. ``fingerprint`` identifies the request
    (see ``rivya_api.idempotency.http.request_fingerprint``); a different one
    under the same live key is a ``MISMATCH``, checked before anything else.

    - No record: insert one, in flight, leased for ``IDEMPOTENCY_LEASE_SECONDS``
      → ``PROCEED``. Concurrent first attempts race on the unique constraint;
      exactly one insert wins, the others read the winner's row.
    - Record past ``expires_at``: the key is free again; exactly one caller
      rewrites it as a new claim (compare-and-swap on ``lease_token``).
    - Completed → ``REPLAY``; in flight with a live lease → ``IN_FLIGHT``.
    - In flight with an expired lease (its process died): exactly one caller
      takes it over → ``PROCEED``; ``expires_at`` stays that of the first attempt.

    Each write is its own short transaction (a savepoint if the caller has one
    open, though callers should not). ``now`` is injectable for tests.
    """
    now = now or timezone.now()
    for _ in range(_CLAIM_ATTEMPTS):
        created = _insert_claim(
            account=account,
            key=key,
            fingerprint=fingerprint,
            request_method=request_method,
            request_path=request_path,
            now=now,
        )
        if created is not None:
            return IdempotencyClaim(ClaimOutcome.PROCEED, created)
        existing = IdempotencyRecord.objects.filter(account=account, key=key).first()
        if existing is None:
            continue  # purged between our insert and our read: insert again
        claim = _claim_existing(
            existing, fingerprint=fingerprint, request_method=request_method, request_path=request_path, now=now
        )
        if claim is not None:
            return claim
        # Another retry took the key over first: loop to read its claim.
    raise RuntimeError(f"Could not settle idempotency key {key!r} after {_CLAIM_ATTEMPTS} attempts")


def _claim_existing(
    record: IdempotencyRecord, *, fingerprint: str, request_method: str, request_path: str, now: datetime
) -> IdempotencyClaim | None:
    """Decide about a record that already holds the key; None if another caller won a takeover race."""
    if record.expires_at <= now:
        return _claim_expired(
            record, fingerprint=fingerprint, request_method=request_method, request_path=request_path, now=now
        )
    if record.fingerprint != fingerprint:
        return IdempotencyClaim(ClaimOutcome.MISMATCH, record)
    if record.state == IdempotencyRecord.State.COMPLETED:
        record.response_body = sealing.unseal(record.response_body)
        return IdempotencyClaim(ClaimOutcome.REPLAY, record)
    if record.locked_until is not None and record.locked_until > now:
        return IdempotencyClaim(ClaimOutcome.IN_FLIGHT, record, retry_after=_retry_after(record, now))
    return _claim_stale(record, now=now)


def _claim_expired(
    record: IdempotencyRecord, *, fingerprint: str, request_method: str, request_path: str, now: datetime
) -> IdempotencyClaim | None:
    """The key is free again past ``expires_at``: rewrite the record as a new first attempt."""
    fresh = {
        "fingerprint": fingerprint,
        "request_method": request_method,
        "request_path": request_path,
        "created_at": now,
        "completed_at": None,
        "expires_at": now + timedelta(seconds=api_settings.IDEMPOTENCY_RETENTION_SECONDS),
        "reference": "",
        "response_status": None,
        "response_headers": {},
        "response_body": b"",
    }
    if _take_over(record, now=now, extra=fresh):
        return IdempotencyClaim(ClaimOutcome.PROCEED, record)
    return None


def _claim_stale(record: IdempotencyRecord, *, now: datetime) -> IdempotencyClaim | None:
    """In flight with an expired lease: take it over, keeping the first attempt's ``expires_at``."""
    stale_since = record.locked_until
    if not _take_over(record, now=now, extra={}):
        return None
    logger.warning(
        "Idempotency key %r of account %s: lease expired at %s without an outcome; "
        "this attempt takes it over (the first attempt's process presumably died)",
        record.key,
        record.account_id,
        stale_since,
    )
    return IdempotencyClaim(ClaimOutcome.PROCEED, record)


def _insert_claim(
    *, account: Any, key: str, fingerprint: str, request_method: str, request_path: str, now: datetime
) -> IdempotencyRecord | None:
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                account=account,
                key=key,
                fingerprint=fingerprint,
                request_method=request_method[:10],
                request_path=request_path[:2048],
                state=IdempotencyRecord.State.IN_FLIGHT,
                lease_token=uuid.uuid4(),
                locked_until=now + timedelta(seconds=api_settings.IDEMPOTENCY_LEASE_SECONDS),
                created_at=now,
                expires_at=now + timedelta(seconds=api_settings.IDEMPOTENCY_RETENTION_SECONDS),
            )
    except IntegrityError:
        return None


def _take_over(record: IdempotencyRecord, *, now: datetime, extra: dict[str, Any]) -> bool:
    """Compare-and-swap the claim: only succeeds if nobody changed the row since we read it."""
    fields = {
        "state": IdempotencyRecord.State.IN_FLIGHT,
        "lease_token": uuid.uuid4(),
        "locked_until": now + timedelta(seconds=api_settings.IDEMPOTENCY_LEASE_SECONDS),
        **extra,
    }
    updated = IdempotencyRecord.objects.filter(pk=record.pk, lease_token=record.lease_token).update(**fields)
    if updated != 1:
        return False
    for name, value in fields.items():
        setattr(record, name, value)
    return True


def _retry_after(record: IdempotencyRecord, now: datetime) -> int:
    # Most requests finish within a second or two, so the configured hint wins;
    # it never points past the lease, after which the key may be taken over.
    hint = max(1, int(api_settings.IDEMPOTENCY_RETRY_AFTER_SECONDS))
    assert record.locked_until is not None
    remaining = max(1, math.ceil((record.locked_until - now).total_seconds()))
    return min(hint, remaining)


def idempotency_complete(
    *,
    record: IdempotencyRecord,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
) -> bool:
    """Store the response of the request that owns ``record``'s claim.

    Returns False (and stores nothing) if the claim is no longer this caller's:
    its lease expired and another attempt took the key over, or it was
    released. One UPDATE guarded by ``lease_token``: it joins the caller's
    transaction when there is one, so the outcome can commit with the work.
    """
    now = now or timezone.now()
    fields = {
        "state": IdempotencyRecord.State.COMPLETED,
        "response_status": status_code,
        "response_headers": dict(headers),
        "response_body": sealing.seal(body),  # it may hold a secret shown once (see sealing)
        "completed_at": now,
        "locked_until": None,
    }
    updated = IdempotencyRecord.objects.filter(
        pk=record.pk, lease_token=record.lease_token, state=IdempotencyRecord.State.IN_FLIGHT
    ).update(**fields)
    if not updated:
        logger.warning("Idempotency key %r: the claim was lost before its response could be stored", record.key)
        return False
    for name, value in {**fields, "response_body": bytes(body)}.items():
        setattr(record, name, value)
    return True


def idempotency_release(*, record: IdempotencyRecord) -> bool:
    """Give the key back: the request was rejected before execution and stores nothing.

    Deletes the in-flight row if it still carries this caller's ``lease_token``;
    returns whether it did. A retry with the key then runs as a first attempt.
    """
    deleted, _ = IdempotencyRecord.objects.filter(
        pk=record.pk, lease_token=record.lease_token, state=IdempotencyRecord.State.IN_FLIGHT
    ).delete()
    return bool(deleted)


def idempotency_renew(*, record: IdempotencyRecord, now: datetime | None = None, seconds: float | None = None) -> bool:
    """Set the lease of a running request to ``seconds`` from now (default ``IDEMPOTENCY_LEASE_SECONDS``).

    A long-running request (a slow chat turn, a stream) extends it well within
    the lease; a request that cannot tell whether its work committed shortens it,
    so a retry may take the key over soon. Returns False if the claim was already
    lost (taken over after the lease expired, or released): the caller no longer owns the key.
    """
    now = now or timezone.now()
    locked_until = now + timedelta(seconds=api_settings.IDEMPOTENCY_LEASE_SECONDS if seconds is None else seconds)
    updated = IdempotencyRecord.objects.filter(
        pk=record.pk, lease_token=record.lease_token, state=IdempotencyRecord.State.IN_FLIGHT
    ).update(locked_until=locked_until)
    if updated:
        record.locked_until = locked_until
    return bool(updated)


def idempotency_reference_set(*, record: IdempotencyRecord, reference: str) -> bool:
    """Name the work the running request created (``task_…``, ``msg_…``) on its claim.

    A retry that gets ``IN_FLIGHT`` reads it from ``claim.record.reference``, e.g.
    to attach to a live chat stream. Only the claim's owner can set it (guarded
    by ``lease_token``); returns False once the claim is lost. One UPDATE, so it
    may run inside the transaction that creates the work.
    """
    updated = IdempotencyRecord.objects.filter(
        pk=record.pk, lease_token=record.lease_token, state=IdempotencyRecord.State.IN_FLIGHT
    ).update(reference=reference[:64])
    if updated:
        record.reference = reference[:64]
    return bool(updated)


def idempotency_records_purge(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Delete records past ``expires_at``; returns how many. Run hourly by beat.

    Spares an in-flight record whose lease is still live (a request running
    across its own expiry), and re-checks both conditions in each DELETE, so a
    record a retry has just taken over (new ``expires_at``) is never removed.
    Deletes in batches of ``batch_size``, each its own statement.
    """
    now = now or timezone.now()
    due = IdempotencyRecord.objects.filter(expires_at__lte=now).exclude(
        state=IdempotencyRecord.State.IN_FLIGHT, locked_until__gt=now
    )
    total = 0
    while True:
        pks = list(due.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return total
        deleted, _ = due.filter(pk__in=pks).delete()
        total += deleted
        if deleted == 0:
            return total  # every candidate was taken over meanwhile


async def aidempotency_claim(
    *,
    account: Any,
    key: str,
    fingerprint: str,
    request_method: str = "",
    request_path: str = "",
    now: datetime | None = None,
) -> IdempotencyClaim:
    """``idempotency_claim`` for async views (runs it in a thread)."""
    return await sync_to_async(idempotency_claim)(
        account=account,
        key=key,
        fingerprint=fingerprint,
        request_method=request_method,
        request_path=request_path,
        now=now,
    )


async def aidempotency_complete(
    *,
    record: IdempotencyRecord,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
) -> bool:
    """``idempotency_complete`` for async views (runs it in a thread)."""
    return await sync_to_async(idempotency_complete)(
        record=record, status_code=status_code, headers=headers, body=body, now=now
    )


async def aidempotency_release(*, record: IdempotencyRecord) -> bool:
    """``idempotency_release`` for async views (runs it in a thread)."""
    return await sync_to_async(idempotency_release)(record=record)


async def aidempotency_reference_set(*, record: IdempotencyRecord, reference: str) -> bool:
    """``idempotency_reference_set`` for async views (runs it in a thread)."""
    return await sync_to_async(idempotency_reference_set)(record=record, reference=reference)


async def aidempotency_renew(*, record: IdempotencyRecord, now: datetime | None = None) -> bool:
    """``idempotency_renew`` for async views (runs it in a thread)."""
    return await sync_to_async(idempotency_renew)(record=record, now=now)
