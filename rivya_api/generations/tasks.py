"""Celery tasks for generations: thin wrappers over the services."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown

from rivya_api.generations import live, provider_process, services, sweeps

__all__ = ["generation_run_task", "generations_sweep_task"]


@shared_task(name="rivya_api.generation_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def generation_run_task(task_pk: int) -> None:
    # Safe to deliver twice: generation_start lets exactly one run claim the task.
    services.generation_run(task_pk=task_pk)


@shared_task(name="rivya_api.generations_sweep", ignore_result=True)
def generations_sweep_task() -> dict[str, int]:
    return sweeps.generations_sweep()


# Each prefork child sends its live updates through a loop of its own (see live).
worker_process_init.connect(live.worker_loop_enable, weak=False, dispatch_uid="rivya_live_worker_loop")
# And sends the live updates it has queued before it exits.
worker_process_shutdown.connect(live.worker_loop_flush, weak=False, dispatch_uid="rivya_live_worker_flush")
# And starts its provider forkserver and an idle provider process before its first job needs them.
worker_process_init.connect(provider_process.warm_start, weak=False, dispatch_uid="rivya_provider_warm_start")
