"""The generations sweeper: recover lost and dead work, and end what is overdue, one task at a time.

Three passes, each over at most ``BATCH`` tasks, each task in its own transaction:

* queued tasks the broker lost (queued longer than ``GENERATION_REQUEUE_AFTER``) are queued again;
* running tasks whose worker stopped beating are retried once (safe providers) or failed;
* then, whatever backoff says, tasks still past their deadline (``deadline_at``: the queue
  lease while queued, the model's time limit plus the heartbeat lease while running) are failed
  and released, whatever their worker is doing: no generation stays queued or running past it.

A task that raises is logged with its id, counted in
``rivya_background_row_failures_total``, and skipped: the passes go on with the
next task and later runs are not stopped by it. It is retried after a backoff
(30 s, doubling, at most an hour), and after ``GENERATION_SWEEP_MAX_FAILURES``
failures it is abandoned (failed and released, ``generation_abandon``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from rivya_api import metrics
from rivya_api.catalog.selectors import catalog_model_get, catalog_provider
from rivya_api.conf import api_settings
from rivya_api.generations import services
from rivya_api.generations.finishing import generation_abandon, generation_fail, sweep_outputs_on_commit
from rivya_api.generations.models import GenerationTask

logger = logging.getLogger(__name__)

Status = GenerationTask.Status
BATCH = 500
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(hours=1)


def generations_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Recover from lost work, dead workers and overdue tasks; returns how many of each it handled."""
    now = now or timezone.now()
    due = GenerationTask.objects.filter(Q(sweep_retry_at__isnull=True) | Q(sweep_retry_at__lte=now))
    in_time = Q(deadline_at__isnull=True) | Q(deadline_at__gte=now)
    lost = due.filter(in_time, status=Status.QUEUED, queued_at__lt=now - api_settings.GENERATION_REQUEUE_AFTER)
    dead = due.filter(status=Status.RUNNING, heartbeat_at__lt=now - api_settings.GENERATION_HEARTBEAT_TIMEOUT)
    requeued = _each("requeue", lost, _requeue, now)
    recovered = _each("recover", dead, _recover, now)
    # Last, and regardless of any backoff: whatever is still overdue ends now (a retry got a new deadline).
    overdue = GenerationTask.objects.filter(status__in=[Status.QUEUED, Status.RUNNING], deadline_at__lt=now)
    timed_out = _each("timeout", overdue, generation_time_out, now)
    return {"requeued": requeued, "recovered": recovered, "timed_out": timed_out}


def _each(job: str, queryset: object, handle: Callable[..., object], now: datetime) -> int:
    """``handle(task_pk=…, now=…)`` for each task, each on its own: one that raises never stops the others."""
    handled = 0
    for pk, public_id in list(queryset.order_by("pk").values_list("pk", "public_id")[:BATCH]):  # type: ignore[attr-defined]
        try:
            handle(task_pk=pk, now=now)
        except Exception:
            logger.exception("Generations sweep (%s): task %s failed; moving on to the next", job, public_id)
            metrics.background_row_failed(job=f"generations_sweep.{job}")
            _note_failure(pk, public_id, now)
        else:
            handled += 1
    return handled


def _note_failure(pk: int, public_id: str, now: datetime) -> None:
    """Back off from a task the sweep failed on; abandon it after GENERATION_SWEEP_MAX_FAILURES."""
    try:
        GenerationTask.objects.filter(pk=pk).update(sweep_failures=F("sweep_failures") + 1)
        failures = GenerationTask.objects.values_list("sweep_failures", flat=True).get(pk=pk)
        if failures >= int(api_settings.GENERATION_SWEEP_MAX_FAILURES):
            logger.error("Generation %s failed %s sweeps; abandoning it", public_id, failures)
            generation_abandon(task_pk=pk)
            return
        backoff = min(FIRST_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF)
        GenerationTask.objects.filter(pk=pk).update(sweep_retry_at=now + backoff)
    except Exception:
        logger.exception("Generations sweep: could not record the failure of %s", public_id)


def _requeue(*, task_pk: int, now: datetime) -> None:
    with transaction.atomic():
        # Duplicates are harmless: generation_start lets one delivery claim the task.
        if GenerationTask.objects.filter(pk=task_pk, status=Status.QUEUED).update(queued_at=now):
            services.enqueue_on_commit(GenerationTask.objects.get(pk=task_pk))


def _recover(*, task_pk: int, now: datetime) -> None:
    generation_recover(task_pk=task_pk, now=now)


def generation_recover(*, task_pk: int, now: datetime | None = None) -> GenerationTask | None:
    """A running task whose worker stopped reporting: retry once if the provider allows, else fail and release."""
    now = now or timezone.now()
    with transaction.atomic():
        task = GenerationTask.objects.select_for_update().get(pk=task_pk)
        if task.status != Status.RUNNING:
            return None
        provider = catalog_provider(catalog_model_get(task.model))
        if getattr(provider, "safe_to_retry", False) and task.attempts < 2 and not task.cancel_requested:
            task.status, task.progress, task.queued_at = Status.QUEUED, 0, now
            task.deadline_at = now + api_settings.GENERATION_QUEUE_LEASE
            task.save(update_fields=["status", "progress", "queued_at", "deadline_at"])
            services.claim_hold(task, api_settings.GENERATION_QUEUE_LEASE)
            sweep_outputs_on_commit(task)  # of the run presumed dead (it can no longer commit rows)
            services.enqueue_on_commit(task)
            return task
    return generation_fail(task_pk=task_pk, code="worker_lost", message="The worker running this task stopped.")


def generation_time_out(*, task_pk: int, now: datetime | None = None) -> GenerationTask | None:
    """Fail and release a task past its deadline, whatever its worker is doing (a late success is refused)."""
    status = GenerationTask.objects.values_list("status", flat=True).get(pk=task_pk)
    if status == Status.RUNNING:
        code, message = "generation_timeout", "The model did not finish within its time limit."
    elif status == Status.QUEUED:
        code, message = "queue_timeout", "The generation could not start in time; nothing was charged."
    else:
        return None
    try:
        return generation_fail(task_pk=task_pk, code=code, message=message, from_status=status)
    except Exception:
        # Past its deadline there is no backing off: end it now.
        logger.exception("Generation task %s could not be timed out the usual way; abandoning it", task_pk)
        return generation_abandon(task_pk=task_pk, code=code, message=message)
