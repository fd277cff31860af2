"""How a generation ends: succeeded, failed, canceled, or abandoned, each with its money and its event.

Each is one transaction: the task's new state, the ledger operation (capture
exactly the quoted price on success, release the whole hold otherwise) and the
webhook event commit together; a success also inserts its outputs' rows there, so
a job's happy path is its claim and this (issue 25: at most three transactions).
``generation_abandon`` is the last resort when the usual path keeps failing on one task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from rivya_api import metrics
from rivya_api.files.models import File
from rivya_api.files.selectors import file_storage
from rivya_api.files.services import file_delete, file_store, file_store_sweep
from rivya_api.generations import pg_finish, pg_succeed
from rivya_api.generations.models import GenerationTask
from rivya_api.generations.providers import OutputFile
from rivya_billing import services as billing
from rivya_billing.exceptions import HoldNotPendingError, StaleHoldError
from rivya_billing.services.holds import _settle_joined
from rivya_webhooks.services.publishing import _publish_joined

logger = logging.getLogger("rivya_api.generations.services")

Status = GenerationTask.Status
OUTPUT_PURPOSE = "generation_output"


def _now() -> Any:
    return timezone.now()


Claim = tuple[int | None, int]


def run_claim(task: GenerationTask) -> Claim:
    """What identifies one run's claim: the hold's lease token (None for a free task) and the
    attempt number (every claim increments it, so a free task's runs differ too)."""
    return task.hold_token, task.attempts


def _lock_running(task_pk: int, claim: Claim) -> GenerationTask | None:
    """The task, row-locked with its account, if it is still running under this run's claim."""
    task = GenerationTask.objects.select_for_update(of=("self",)).select_related("account").get(pk=task_pk)
    return task if task.status == Status.RUNNING and run_claim(task) == claim else None


def _outputs_prefix(task: GenerationTask) -> str:
    """Where a task's outputs are stored, so bytes whose rows never committed can be found."""
    return f"{OUTPUT_PURPOSE}/{task.public_id}"


def sweep_outputs_on_commit(task: GenerationTask) -> None:
    """Once no run of ``task`` can commit outputs any more (ended or re-queued), remove stored
    bytes no row names: those of a run killed between storing and its commit."""
    # Only the attempts made so far: a run that claims it next stores under a new one.
    prefixes = [f"{_outputs_prefix(task)}/{attempt}" for attempt in range(1, task.attempts + 1)]

    def sweep() -> None:
        for prefix in prefixes:
            try:
                file_store_sweep(name_prefix=prefix)
            except Exception:
                logger.warning("Could not sweep the uncommitted outputs under %s", prefix, exc_info=True)

    transaction.on_commit(sweep)


class _Undo(Exception):
    """Roll the success back: the run lost its claim (``canceled`` False) or its cancel was asked."""

    def __init__(self, *, canceled: bool) -> None:
        super().__init__()
        self.canceled = canceled


class _Lapsed(Exception):
    """The settle after ``_mark_succeeded`` was refused (the lease lapsed): redo the finish by the
    locking read, so the failed row and its event are those of that path."""


def generation_succeed(*, task: GenerationTask, outputs: Sequence[OutputFile]) -> GenerationTask | None:
    """Running → succeeded, in one transaction: the outputs' rows, the capture of exactly the
    quoted price, the task's new state and its event.

    The outputs are checked and stored first, outside any transaction (``file_store``), under
    the task's prefix; their rows are inserted in the finish transaction. When the
    run no longer owns the task (a sweeper or a cancel ended it, another run claimed it) or
    its cancel was asked, nothing of it commits and the bytes are removed; an asked cancel then
    ends the task canceled and released. A ``FileError`` (an output the files app refuses)
    propagates, with nothing committed. On PostgreSQL the transaction is first sent as one query
    (``pg_finish``); what it does not write, the transaction below decides.
    """
    stored: list[File] = []
    prefix = f"{_outputs_prefix(task)}/{task.attempts}"
    try:
        for out in outputs:
            stored.append(
                file_store(
                    account=task.account,
                    content=out.data,
                    filename=out.filename,
                    purpose=OUTPUT_PURPOSE,
                    name_prefix=prefix,
                )
            )
        try:
            if pg_finish.batched(task, len(stored)):
                done = _succeed_batched(task, stored)
                if done is not None:
                    return done
            return _succeed_in_transaction(task, stored, fast=True)
        except _Lapsed:
            # The mark and the outputs' rows are rolled back: the locking read decides from the
            # row as the run left it (its last reported progress), as it would have without the mark.
            for file in stored:
                file.pk, file._state.adding = None, True
            return _succeed_in_transaction(task, stored, fast=False)
    except _Undo as undo:
        _remove_bytes(stored)
        return generation_finish_canceled(task_pk=task.pk) if undo.canceled else None
    except BaseException:
        # Also raised after a commit (by a callback such as the WAL flush): keep committed outputs.
        if stored and not _any_committed(stored):
            _remove_bytes(stored)
        raise


def _succeed_batched(task: GenerationTask, stored: list[File]) -> GenerationTask | None:
    """The success as one query (``pg_finish``), then its live update and metrics; None: nothing
    was written (refused, or failed inside its transaction) and the plain finish decides."""
    written = pg_finish.succeed_batched(task, stored, _now())
    if written is None:
        return None
    done, payload = written
    from rivya_api.generations.live import generation_notify_on_commit

    generation_notify_on_commit(done.account_id, payload)  # committed: sent now
    _finished_metrics(done, Status.SUCCEEDED)
    return done


def _succeed_in_transaction(task: GenerationTask, stored: list[File], *, fast: bool) -> GenerationTask:
    """The finish transaction of a success; ``fast``: first try the conditional UPDATE."""
    with transaction.atomic():
        completed_at = _now()
        if fast and pg_succeed.enabled(len(stored)):
            # One statement: the outputs' rows, the conditional UPDATE and, if it matched, the links.
            if pg_succeed.insert_and_mark(task, stored, completed_at):
                return _succeed_locked(task, stored, completed_at=completed_at, linked=True)
        else:
            File.objects.bulk_create(stored)
            if fast and _mark_succeeded(task, completed_at):
                return _succeed_locked(task, stored, completed_at=completed_at)
        locked = _lock_running(task.pk, run_claim(task))
        if locked is None or locked.cancel_requested:
            raise _Undo(canceled=locked is not None)
        return _succeed_locked(locked, stored)


def _any_committed(files: list[File]) -> bool:
    try:
        return File.objects.filter(public_id__in=[file.public_id for file in files]).exists()
    except Exception:
        return True  # cannot tell: leave the bytes (an orphan, not a lost output)


def _mark_succeeded(task: GenerationTask, completed_at: Any) -> bool:
    """Write the success onto the task's row if it is still running under this run's claim, its
    cancel not asked and its sequence where the claim left it: one conditional UPDATE, which also
    takes the row lock (before the hold's and the wallet's, as ``_lock_running``). False: nothing
    written; the caller locks the row and decides (lost claim, cancel, or anything unexpected)."""
    hold_token, attempts = run_claim(task)
    return bool(
        GenerationTask.objects.filter(
            pk=task.pk,
            status=Status.RUNNING,
            hold_token=hold_token,
            attempts=attempts,
            cancel_requested=False,
            event_sequence=task.event_sequence,
        ).update(
            status=Status.SUCCEEDED,
            charged=task.price,
            refunded=0,
            completed_at=completed_at,
            progress=100,
            error_code=task.error_code,
            error_message=task.error_message,
            event_sequence=task.event_sequence + 1,
        )
    )


def _succeed_locked(
    task: GenerationTask, files: list[File], *, completed_at: Any = None, linked: bool = False
) -> GenerationTask:
    """Settle and link the outputs of the row-locked ``task``; ``completed_at``: its success is
    written already (``_mark_succeeded``); a refused settle then raises ``_Lapsed``. ``linked``:
    the outputs' links are written too (``pg_succeed``)."""
    if task.price:
        try:
            # Joined: a database error here ends the finish's whole transaction (no savepoint, as _publish_joined).
            _settle_joined(
                account=task.account, reference=task.public_id, amount=task.price, lease_token=task.hold_token
            )
        except HoldNotPendingError:
            if completed_at is not None:
                raise _Lapsed from None  # the row holds the mark's success, not what the run left
            # This run's claim on the credits lapsed (it was presumed dead): it cannot charge now.
            for file in files:
                file_delete(file=file)
            _release(task)
            task.error_code, task.error_message = "hold_expired", "The task ran past its lease and was stopped."
            return _finish(task, Status.FAILED, released=task.price)
    if not linked:
        through = GenerationTask.outputs.through
        through.objects.bulk_create([through(generationtask_id=task.pk, file_id=file.pk) for file in files])
    return _finish(task, Status.SUCCEEDED, charged=task.price, outputs=files, written_at=completed_at)


def _remove_bytes(files: list[File]) -> None:
    """Remove the stored bytes of outputs whose rows were rolled back (they never became visible)."""
    for file in files:
        try:
            file_storage().delete(file.storage_name)
        except Exception:
            logger.exception("Could not remove the bytes of the discarded output %s", file.public_id)


@transaction.atomic
def generation_fail(
    *, task_pk: int, code: str, message: str, from_status: str = Status.RUNNING, claim: Claim | None = None
) -> GenerationTask | None:
    """→ failed: release the hold in full and publish ``generation.failed``.

    ``claim`` (a run failing its own task): do nothing unless the task is still under it,
    so a run that lost its claim never ends the task the next run owns.
    """
    task = GenerationTask.objects.select_for_update().get(pk=task_pk)
    if task.status != from_status or (claim is not None and run_claim(task) != claim):
        return None
    _release(task)
    task.error_code, task.error_message = code, message[:500]
    return _finish(task, Status.FAILED, released=task.price)


def generation_finish_canceled(*, task_pk: int) -> GenerationTask | None:
    with transaction.atomic():
        task = GenerationTask.objects.select_for_update().get(pk=task_pk)
        if task.is_terminal:
            return None
        _release(task)
        return _finish(task, Status.CANCELED, released=task.price)


def _release(task: GenerationTask) -> None:
    """Give the whole hold back; a hold already returned (released or expired) counts as done."""
    if not task.price:
        return
    try:
        billing.credits_release(account=task.account, reference=task.public_id)
    except StaleHoldError:
        # Its lease lapsed: return it the way the billing sweeper would.
        billing.credits_hold_expire(account=task.account, reference=task.public_id)
    except HoldNotPendingError as exc:
        if exc.state == "settled":
            raise


def _finish(
    task: GenerationTask,
    status: str,
    *,
    charged: int = 0,
    released: int = 0,
    outputs: list[Any] | None = None,
    written_at: Any = None,
) -> GenerationTask:
    """The task's terminal state, its event and its live update; ``written_at``: the row already
    holds this state, completed then (``_mark_succeeded``), so it is not saved again."""
    task.status = status
    task.charged, task.refunded = charged, released  # the refunded column holds what was released
    task.completed_at = written_at or _now()
    if status == Status.SUCCEEDED:
        task.progress = 100
    task.event_sequence += 1
    if written_at is None:
        task.save(
            update_fields=[
                *("status", "charged", "refunded", "completed_at", "progress", "error_code", "error_message"),
                "event_sequence",
            ]
        )
    _publish(task, f"generation.{status}", counted=True, outputs=outputs)
    if status != Status.SUCCEEDED:
        sweep_outputs_on_commit(task)
    _finished_metrics(task, status)
    return task


def _finished_metrics(task: GenerationTask, status: str) -> None:
    """The finish's metrics, once committed (outside a transaction: now)."""
    run_seconds = (task.completed_at - task.started_at).total_seconds() if task.started_at else None
    model_name = task.model
    transaction.on_commit(
        lambda: metrics.generation_finished(model=model_name, status=status, run_seconds=run_seconds), robust=True
    )


def _publish(
    task: GenerationTask,
    event_type: str,
    *,
    notify_only: bool = False,
    counted: bool = False,
    outputs: list[Any] | None = None,
) -> None:
    """Bump the task's event sequence (unless the caller saved it ``counted``) and, for terminal
    states, write the webhook event (same transaction); the live update goes out on commit."""
    from rivya_api.generations.presenters import generation_payload

    if not counted:
        task.event_sequence += 1
        GenerationTask.objects.filter(pk=task.pk).update(event_sequence=task.event_sequence)
    payload = generation_payload(task, request=None, outputs=outputs)
    payload["sequence"] = task.event_sequence
    if not notify_only:
        # No savepoint: a database error here ends the finish's whole transaction (generation_abandon
        # keeps its own savepoint around this call).
        _publish_joined(account=task.account, type=event_type, data=payload)
    from rivya_api.generations.live import generation_notify_on_commit

    generation_notify_on_commit(task.account_id, payload)


def generation_abandon(
    *,
    task_pk: int,
    code: str = "internal_error",
    message: str = "The generation failed on our side.",
    claim: Claim | None = None,
) -> GenerationTask | None:
    """Fail a task that its usual path cannot finish, so it never stays queued or running.

    The last resort of the runner and the sweeper when ``generation_fail`` itself
    keeps raising on this task. Its hold is released if that works; if not, the
    hold's lease lapses and billing's sweeper releases it, as for a dead worker.
    Its ``generation.failed`` event is published if that works, and logged if not.
    One transaction; returns None if the task is already terminal (or, given ``claim``, no
    longer under it).
    """
    with transaction.atomic():
        task = GenerationTask.objects.select_for_update().get(pk=task_pk)
        if task.is_terminal or (claim is not None and run_claim(task) != claim):
            return None
        try:
            with transaction.atomic():
                _release(task)
        except Exception:
            logger.exception("Generation %s: its hold could not be released; its lease will lapse", task.public_id)
        task.error_code, task.error_message = code, message[:500]
        task.status, task.charged, task.refunded, task.completed_at = Status.FAILED, 0, task.price, _now()
        task.save(update_fields=["status", "charged", "refunded", "completed_at", "error_code", "error_message"])
        sweep_outputs_on_commit(task)
        try:
            with transaction.atomic():
                _publish(task, "generation.failed")
        except Exception:
            logger.exception("Generation %s failed; its generation.failed event could not be published", task.public_id)
    model_name = task.model
    metrics.generation_finished(model=model_name, status=Status.FAILED, run_seconds=None)
    return task
