"""Generation business operations: quote, submit, run, finish, cancel, sweep.

Money and events follow the design's failure rules: the quoted price is
reserved when the job is accepted (402 then, not a failed task later),
captured exactly on success, and released in full on failure or cancel. Each
state change commits together with its ledger operation and its webhook event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from rivya_api import metrics
from rivya_api.catalog.selectors import (
    catalog_file_parameters,
    catalog_model_get,
    catalog_price,
    catalog_provider,
    catalog_validate_input,
)
from rivya_api.conf import api_settings
from rivya_api.files.exceptions import FileError, NoSuchFileError
from rivya_api.files.selectors import file_get_usable, file_open
from rivya_api.generations import isolation, pg_claim, pg_claim_hold
from rivya_api.generations.exceptions import (
    GenerationNotCancelableError,
    GenerationNotFoundError,
    InputFileNotFoundError,
    InputTooLargeError,
    MaxCreditsExceededError,
    ModelNotSupportedError,
)
from rivya_api.generations.finishing import (
    _finish,
    _publish,
    _release,
    generation_abandon,
    generation_fail,
    generation_finish_canceled,
    generation_succeed,
    run_claim,
)
from rivya_api.generations.heartbeat import GenerationCanceled, GenerationSuperseded, _Heartbeat, _Progress
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers import InputFile, ProviderError
from rivya_api.keys.limits import key_reservation_observe
from rivya_billing import services as billing
from rivya_billing.services.leases import _hold_renew_joined

logger = logging.getLogger(__name__)

Status = GenerationTask.Status


@dataclass(frozen=True)
class Quote:
    model: Any
    input: dict[str, Any]
    price: int
    input_files: dict[str, Any]


def generation_quote(*, account: Any, model_id: str, input: dict[str, Any]) -> Quote:
    """Validate ``input`` against the model's schema and price it; raises a RivyaError naming the parameter."""
    model = catalog_model_get(model_id)
    if model.kind == "chat":
        raise ModelNotSupportedError("Chat models use POST /api/v1/chat/completions.")
    validated = catalog_validate_input(model, input)
    files = _input_files(account=account, model=model, validated=validated)
    return Quote(model=model, input=validated, price=catalog_price(model, validated), input_files=files)


def _input_files(*, account: Any, model: Any, validated: dict[str, Any]) -> dict[str, Any]:
    """The account's own files named in the input, each of a fitting type."""
    found = {}
    for name, content_types in catalog_file_parameters(model).items():
        value = validated.get(name)
        if not value:
            continue
        param = f"input.{name}"
        try:
            found[name] = file_get_usable(account=account, file_id=value, content_types=content_types, param=param)
        except NoSuchFileError:
            # A parameter, not the URL, names the file: a 400 (another account's id looks the same).
            raise InputFileNotFoundError(f"No such file: {value}.", param=param) from None
    return found


def _now() -> datetime:
    return timezone.now()


@transaction.atomic
def generation_create(
    *,
    account: Any,
    model_id: str,
    input: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    max_credits: int | None = None,
    submitted_by: str = "",
    source: str = "api",
    on_created: Callable[[GenerationTask], None] | None = None,
    spend_limit: int | None = None,
) -> GenerationTask:
    """Accept a job: quote it, reserve its price, create the task and queue it after commit.

    Raises ``InsufficientCreditsError`` (nothing is created) when the wallet
    cannot cover the price, ``MaxCreditsExceededError`` before reserving when
    the price is above ``max_credits``. ``on_created(task)`` runs inside the
    transaction once the task exists, before its price is reserved (the API
    names the task on the request's Idempotency-Key there); raising from it, or
    a refused reservation, undoes everything. ``spend_limit`` (the API key's credit
    limit) is counted in the same step as the reservation: ``SpendLimitExceededError``.
    """
    quote = generation_quote(account=account, model_id=model_id, input=input)
    _check_user_data_size(quote.input, metadata)
    _check_max_credits(quote.price, max_credits)
    now = _now()
    task = GenerationTask.objects.create(
        account=account,
        submitted_by=submitted_by,
        source=source,
        model=quote.model.id,
        kind=quote.model.kind,
        input=quote.input,
        metadata=metadata or {},
        price=quote.price,
        queued_at=now,
        deadline_at=now + api_settings.GENERATION_QUEUE_LEASE,
        expires_at=now + api_settings.GENERATION_RETENTION,
    )
    if on_created is not None:
        on_created(task)
    if quote.price:
        # Last, so that the wallet's row lock (held until commit) covers no other statement.
        hold = billing.credits_reserve(
            account=account,
            amount=quote.price,
            reference=task.public_id,
            actor=submitted_by,
            lease_seconds=_seconds(api_settings.GENERATION_QUEUE_LEASE),
            spend_limit=spend_limit,
        )
        key_reservation_observe(hold)
    enqueue_on_commit(task)
    model_name = task.model
    transaction.on_commit(lambda: metrics.generation_accepted(model=model_name), robust=True)
    return task


def _check_user_data_size(validated: dict[str, Any], metadata: dict[str, Any] | None) -> None:
    """Refuse input and metadata that, copied into the task's webhook events, could outgrow them."""
    limit = int(api_settings.GENERATION_USER_DATA_MAX_BYTES)
    size = len(json.dumps([validated, metadata or {}], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > limit:
        raise InputTooLargeError(
            f"input and metadata together take {size} bytes as JSON; at most {limit} are accepted. "
            "Upload large content with POST /api/v1/files and pass its id."
        )


def _check_max_credits(price: int, max_credits: int | None) -> None:
    if max_credits is not None and price > max_credits:
        raise MaxCreditsExceededError(
            f"This generation costs {price} credits, more than max_credits ({max_credits}); nothing was "
            f"reserved. Send max_credits of at least {price}, or change the input to cost less."
        )


def enqueue_on_commit(task: GenerationTask) -> None:
    from rivya_api.generations.tasks import generation_run_task

    task_pk, public_id = task.pk, task.public_id

    def send() -> None:
        try:
            generation_run_task.delay(task_pk)
        except Exception:
            # The task and its hold are committed as queued, so the job is accepted either
            # way: the sweeper queues it after GENERATION_REQUEUE_AFTER. Raising here would
            # answer 500 for work that will run and be charged (and invite a duplicate).
            logger.warning("Could not queue generation %s (broker unavailable); the sweeper will", public_id)

    transaction.on_commit(send)


def generation_get(*, account: Any, task_id: str) -> GenerationTask:
    try:
        return GenerationTask.objects.prefetch_related("outputs").get(account=account, public_id=task_id)
    except GenerationTask.DoesNotExist:
        raise GenerationNotFoundError(f"No such generation: {task_id}.") from None


# --- Running --------------------------------------------------------------------


class _Fallback(Exception):
    """The fast claim's guesses were off: roll it back and claim the plain way."""


def generation_start(*, task_pk: int) -> GenerationTask | None:
    """Claim a queued task for this worker (at most one worker wins), or None if it isn't queued.

    One transaction: the task's state, its hold's lease for this run and its sequence in one
    save (the live update goes out on commit). On PostgreSQL the task's part is one statement
    (``pg_claim``), else (or when its guesses are off) a row lock and a save.
    """
    now = _now()
    task = _start_fast(task_pk, now) if pg_claim.enabled() else _Fallback
    if task is _Fallback:
        task = _start_locked(task_pk, now)
    if task is None:
        return None
    # Committed: the claim stands. Queue wait is from the last hand-over to the queue (a re-queue restarts it).
    metrics.generation_started(model=task.model, queue_wait_seconds=(now - task.queued_at).total_seconds())
    return task


def _start_fast(task_pk: int, now: datetime) -> Any:
    """``pg_claim``'s UPDATE and the hold's lease in one transaction (``pg_claim_hold``: one statement);
    ``_Fallback`` (rolled back) if a guess was off."""
    lease = api_settings.GENERATION_RUN_LEASE
    try:
        with transaction.atomic():
            merged = pg_claim_hold.enabled()  # the hold's lease taken in the claim's statement
            if merged:
                task, token = pg_claim_hold.claim(task_pk=task_pk, now=now, lease=lease) or (None, None)
            else:
                task, token = pg_claim.claim(task_pk=task_pk, now=now), None
            if task is None:
                return None
            if task.deadline_at != run_deadline(task, now):
                raise _Fallback()
            if not merged:
                token = _take_hold(task, lease)
            if task.price and token != task.hold_token:  # merged: None when its hold's part matched no row
                raise _Fallback()
            _publish(task, "generation.running", notify_only=True, counted=True, outputs=[])
            return task
    except _Fallback:
        return _Fallback


def _start_locked(task_pk: int, now: datetime) -> GenerationTask | None:
    """The plain claim: the task and its account under a row lock, then one save."""
    with transaction.atomic():
        locked = GenerationTask.objects.select_for_update(of=("self",)).select_related("account")
        task = locked.filter(pk=task_pk).first()
        if task is None or task.status != Status.QUEUED:
            return None
        task.status = Status.RUNNING
        task.attempts += 1
        task.started_at = task.started_at or now
        task.heartbeat_at = now
        task.deadline_at = run_deadline(task, now)
        task.hold_token = _take_hold(task, api_settings.GENERATION_RUN_LEASE)
        task.event_sequence += 1
        fields = ["status", "attempts", "started_at", "heartbeat_at", "deadline_at", "hold_token", "event_sequence"]
        task.save(update_fields=fields)
        _publish(task, "generation.running", notify_only=True, counted=True, outputs=[])
    return task


def run_deadline(task: GenerationTask, now: datetime) -> datetime | None:
    """When a run that starts ``now`` is overdue: its model's time limit plus the heartbeat's lease."""
    try:
        limit = catalog_model_get(task.model).timeout_seconds
    except Exception:  # a model gone from the catalog: the run fails at once anyway
        return now + api_settings.GENERATION_HEARTBEAT_TIMEOUT
    return now + timedelta(seconds=limit) + api_settings.GENERATION_HEARTBEAT_TIMEOUT


def _seconds(value: timedelta) -> int:
    return int(value.total_seconds())


def claim_hold(task: GenerationTask, lease: timedelta) -> None:
    """Take the hold's lease for this run: any earlier run's token goes stale, so its late settle is refused."""
    if task.price:
        task.hold_token = _take_hold(task, lease)
        GenerationTask.objects.filter(pk=task.pk).update(hold_token=task.hold_token)


def _take_hold(task: GenerationTask, lease: timedelta) -> int | None:
    """The hold's new lease token (the caller stores it on the task); None for a free task."""
    if not task.price:
        return task.hold_token
    # No savepoint: a database error here ends the claim's whole transaction (as in _renew_hold).
    hold = _hold_renew_joined(account=task.account, reference=task.public_id, lease_seconds=_seconds(lease))
    return hold.lease_token


def generation_run(*, task_pk: int) -> GenerationTask | None:
    """Run one queued task to a terminal state (the body of the Celery task)."""
    task = generation_start(task_pk=task_pk)
    if task is None:
        return None
    with _Heartbeat(task):
        return _generate(task)


def _generate(task: GenerationTask) -> GenerationTask | None:
    model = catalog_model_get(task.model)
    provider = catalog_provider(model)
    try:
        input_files = {
            name: _input_file(file)
            for name, file in _input_files(account=task.account, model=model, validated=task.input).items()
        }
        deadline = time.monotonic() + model.timeout_seconds
        outputs = _provider_run(provider, task.input, input_files, _Progress(task), deadline)
        # The outputs' rows, the charge and the event commit together, or nothing of them does.
        return generation_succeed(task=task, outputs=outputs)
    except GenerationCanceled:
        return generation_finish_canceled(task_pk=task.pk)
    except GenerationSuperseded:
        logger.warning("Generation %s was taken over while running; this run stops", task.public_id)
        return None
    except ProviderError as exc:
        return _fail_safely(task, code=exc.code, message=exc.message)
    except FileError as exc:  # produced media the files app refused, or an input file gone meanwhile
        logger.warning("Generation %s: output or input file refused: %s", task.public_id, exc)
        return _fail_safely(task, code="invalid_output", message="The model produced an invalid result.")
    except Exception:
        # Our own fault, not the client's: fail now and release, rather than wait for the sweeper.
        logger.exception("Generation %s failed unexpectedly", task.public_id)
        return _fail_safely(task, code="internal_error", message="The generation failed on our side.")


def _provider_run(provider: Any, input: dict[str, Any], input_files: dict[str, Any], progress: Any, deadline: float):
    if api_settings.GENERATION_PROVIDER_PROCESS:
        return isolation.provider_run(
            provider=provider, input=input, input_files=input_files, progress=progress, deadline=deadline
        )
    return provider.run(input=input, input_files=input_files, progress=progress, deadline=deadline)


def _fail_safely(task: GenerationTask, *, code: str, message: str) -> GenerationTask | None:
    """``generation_fail``, or, when even that raises (its release or event), ``generation_abandon``;
    either only while the task is still under this run's claim."""
    claim = run_claim(task)
    try:
        return generation_fail(task_pk=task.pk, code=code, message=message, claim=claim)
    except Exception:
        logger.exception("Generation %s could not be failed the usual way; abandoning it", task.public_id)
        return generation_abandon(task_pk=task.pk, code=code, message=message, claim=claim)


def _input_file(file: Any) -> InputFile:
    with file_open(file) as stream:
        return InputFile.from_bytes(stream.read(), content_type=file.content_type, filename=file.filename)


@transaction.atomic
def generation_cancel(*, account: Any, task_id: str) -> GenerationTask:
    """Cancel: a queued task ends canceled (released); a running one is asked to stop; terminal is a 409."""
    task = GenerationTask.objects.select_for_update().filter(account=account, public_id=task_id).first()
    if task is None:
        raise GenerationNotFoundError(f"No such generation: {task_id}.")
    if task.is_terminal:
        raise GenerationNotCancelableError(f"The generation is already {task.status}.")
    if task.status == Status.QUEUED:
        _release(task)
        return _finish(task, Status.CANCELED, released=task.price)
    task.cancel_requested = True
    task.save(update_fields=["cancel_requested"])
    return task
